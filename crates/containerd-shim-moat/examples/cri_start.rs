//! `cri_start SOCKET HANDLER IMAGE LOG_DIR RUNS`: through containerd's CRI, RunPodSandbox with
//! the runtime handler HANDLER ("" for containerd's default, runc), then create and start a
//! container of IMAGE in the pod, until CRI reports it running. Prints each run's milliseconds,
//! one a line, and removes the pod after each (untimed). For `bench/cri.sh`.

use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest, CreateContainerRequest, ImageSpec, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Endpoint, Uri};

/// Longest a pod may take to get its container running.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, handler, image, log_dir, runs] = <[String; 5]>::try_from(args).map_err(|_| anyhow::anyhow!("usage: cri_start SOCKET HANDLER IMAGE LOG_DIR RUNS"))?;
    let runs: u32 = runs.parse()?;
    let channel = Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await?;
    let mut cri = RuntimeServiceClient::new(channel);
    for run in 0..runs {
        let pod_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: format!("bench-{run}"), uid: format!("bench-uid-{run}"), namespace: "default".into(), attempt: 0 }),
            log_directory: log_dir.clone(),
            ..Default::default()
        };
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata { name: "c".into(), attempt: 0 }),
            image: Some(ImageSpec { image: image.clone(), ..Default::default() }),
            command: vec!["sleep".into(), "600".into()],
            log_path: format!("c-{run}.log"),
            ..Default::default()
        };
        let started = Instant::now();
        let pod = cri.run_pod_sandbox(RunPodSandboxRequest { config: Some(pod_config.clone()), runtime_handler: handler.clone() }).await?.into_inner().pod_sandbox_id;
        let create = CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(pod_config) };
        let id = cri.create_container(create).await?.into_inner().container_id;
        cri.start_container(StartContainerRequest { container_id: id.clone() }).await?;
        loop {
            let status = cri.container_status(ContainerStatusRequest { container_id: id.clone(), verbose: false }).await?.into_inner().status;
            if status.is_some_and(|s| s.state == ContainerState::ContainerRunning as i32) {
                break;
            }
            anyhow::ensure!(started.elapsed() < RUN_TIMEOUT, "the container of pod {run} was not running after {RUN_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("{}", started.elapsed().as_millis());
        cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await?;
        cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await?;
    }
    Ok(())
}
