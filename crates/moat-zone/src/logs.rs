//! The workload log format: one JSON object per output chunk.

use moat_proto::Stream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    pub stream: Stream,
    #[serde(with = "moat_proto::bytes")]
    pub data: Vec<u8>,
}
