//! moat-runtime: the one place that knows "containers in a zone". A zone is a pod sandbox; the
//! front-ends (the `moat` CLI, the containerd shim, `moat-oci`) translate their own inputs
//! into the typed requests here and act on the typed results.

pub mod size;
pub mod volumes;
