//! The CRI path: containerd's CRI plugin with the runtime handler `moat` runs a pod sandbox as
//! one zone, on the address CNI gave the pod, and the pod's containers inside that zone.

mod common;

use std::time::{Duration, Instant};

use common::{host_kernel, Containerd, CRI_BUSYBOX, POD_SUBNET};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatsRequest, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

type Cri = RuntimeServiceClient<Channel>;

async fn connect(containerd: &Containerd) -> Cri {
    let socket = containerd.socket_path();
    let channel = Endpoint::try_from("http://[::]:0")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connecting to containerd's CRI");
    RuntimeServiceClient::new(channel)
}

/// Create and start a container in the pod: its id.
async fn start_in_pod(cri: &mut Cri, pod: &str, pod_config: &PodSandboxConfig, name: &str, script: &str, privileged: bool) -> String {
    let security_context = LinuxContainerSecurityContext { privileged, ..Default::default() };
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: CRI_BUSYBOX.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig { security_context: Some(security_context), ..Default::default() }),
        ..Default::default()
    };
    let request = CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
    let id = cri.create_container(request).await.expect("CreateContainer").into_inner().container_id;
    cri.start_container(StartContainerRequest { container_id: id.clone() }).await.expect("StartContainer");
    id
}

/// Run a container in the pod to its end: its exit code and its log.
async fn run_in_pod(cri: &mut Cri, containerd: &Containerd, pod: &str, pod_config: &PodSandboxConfig, name: &str, script: &str) -> (i32, String) {
    let id = start_in_pod(cri, pod, pod_config, name, script, false).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = cri.container_status(ContainerStatusRequest { container_id: id.clone(), verbose: false }).await.expect("ContainerStatus").into_inner().status.expect("a status");
        if status.state == ContainerState::ContainerExited as i32 {
            let log = std::fs::read_to_string(containerd.dir().join("logs").join(format!("{name}.log"))).expect("the container's log");
            // CRI's log lines are "TIME STREAM TAG text".
            let text = log.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).collect::<Vec<_>>().join("\n");
            return (status.exit_code, text);
        }
        assert!(Instant::now() < deadline, "container {name} did not exit; containerd's log:\n{}", containerd.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pids of the shims serving pods.
fn pod_shims() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<i32>().ok()?, std::fs::read(e.path().join("cmdline")).ok()?)))
        .filter(|(_, raw)| String::from_utf8_lossy(raw).starts_with(concat!(env!("CARGO_BIN_EXE_containerd-shim-moat-v2"), "\0-namespace\0k8s.io")))
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn a_pod_is_one_zone_on_its_cni_address_and_its_containers_share_it() {
    let containerd = Containerd::start_with_cri();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut cri = connect(&containerd).await;
        let pod_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: "p1".into(), uid: "u1".into(), namespace: "default".into(), attempt: 0 }),
            log_directory: containerd.dir().join("logs").to_string_lossy().into_owned(),
            // A privileged pod, so that c2 may be privileged. Its resources, as kubelet sums
            // its containers' limits, size its zone: 264 MiB of limits and 96 MiB of reserve,
            // over 15/16, make 384 MiB; 1.5 CPUs make 2 vCPUs.
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext { privileged: true, ..Default::default() }),
                resources: Some(LinuxContainerResources { memory_limit_in_bytes: 264 << 20, cpu_quota: 150_000, cpu_period: 100_000, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = RunPodSandboxRequest { config: Some(pod_config.clone()), runtime_handler: "moat".into() };
        let pod = cri.run_pod_sandbox(request).await.unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log())).into_inner().pod_sandbox_id;
        let status = cri.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: false }).await.expect("PodSandboxStatus").into_inner();
        let ip = status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
        let prefix = POD_SUBNET.trim_end_matches("0/24");
        assert!(ip.starts_with(prefix), "the pod's address comes from CNI: {ip:?}");

        let script = "uname -r; ip -4 -o addr show eth0; cat /proc/sys/kernel/random/boot_id; grep MemTotal /proc/meminfo; nproc; cat /proc/self/uid_map; exit 3";
        let (code, first) = run_in_pod(&mut cri, &containerd, &pod, &pod_config, "c1", script).await;
        assert_eq!(code, 3, "the exit code passes through: {first:?}");
        let lines: Vec<&str> = first.lines().collect();
        assert!(lines.len() == 6 && lines[0] != host_kernel(), "the zone's kernel: {first:?}");
        assert_eq!(lines[5].split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"], "an unprivileged container has a user namespace");
        assert!(lines[1].contains(&format!("inet {ip}/24")), "the zone took over the pod's address {ip}: {first:?}");

        let mem_kib: u64 = lines[3].split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!((300_000..393_216).contains(&mem_kib), "the pod's summed limits sized its zone at 384 MiB: {}", lines[3]);
        assert_eq!(lines[4], "2", "the pod's 1.5 CPUs are 2 vCPUs");

        // c2 is privileged: every capability and the zone's kernel log, on the pod's one kernel.
        let c2 = start_in_pod(&mut cri, &pod, &pod_config, "c2", "sleep 600", true).await;
        let script = "cat /proc/sys/kernel/random/boot_id; grep ^CapEff /proc/self/status; dmesg | grep -m1 'Linux version'; exit 5";
        let exec = ExecSyncRequest { container_id: c2.clone(), cmd: vec!["sh".into(), "-c".into(), script.into()], timeout: 60 };
        let exec = cri.exec_sync(exec).await.unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", containerd.log())).into_inner();
        assert_eq!(exec.exit_code, 5, "ExecSync's exit code: {exec:?}");
        let second = String::from_utf8_lossy(&exec.stdout).into_owned();
        let second: Vec<&str> = second.lines().collect();
        assert_eq!(second.first().copied(), Some(lines[2]), "both containers run on the pod's one zone kernel: {second:?}");
        let host_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
        assert_ne!(second[0], host_boot.trim());
        assert_eq!(second.get(1).copied(), Some("CapEff:\t000001ffffffffff"), "a privileged container has every capability: {second:?}");
        assert!(second.get(2).is_some_and(|l| l.contains(lines[0]) && !l.contains(&host_kernel())), "dmesg shows the zone's kernel, not the host's: {second:?}");
        assert_eq!(pod_shims().len(), 1, "one shim serves the pod");
        let zones = std::fs::read_dir(containerd.dir().join("moat/zones")).expect("zones").flatten().filter(|e| e.file_name() != ".lock").count();
        assert_eq!(zones, 1, "one zone for the pod");

        let stats = cri.container_stats(ContainerStatsRequest { container_id: c2.clone() }).await.unwrap_or_else(|e| panic!("ContainerStats: {e}\n{}", containerd.log())).into_inner().stats.expect("stats");
        println!("CRI ContainerStats of c2: {stats:?}");
        let cpu = stats.cpu.and_then(|c| c.usage_core_nano_seconds).map_or(0, |v| v.value);
        let memory = stats.memory.and_then(|m| m.usage_bytes).map_or(0, |v| v.value);
        assert!(cpu > 0 && memory > 0, "the container's cgroup figures reach CRI: {cpu} ns, {memory} bytes");

        // Issue 11: a shim killed outright takes its pod's zone with it, and containerd
        // hears that the pod's containers ended.
        let [shim] = pod_shims()[..] else { panic!("one pod shim") };
        // SAFETY: kill(2) on the shim this test's containerd started for the pod.
        unsafe { libc::kill(shim, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = cri.container_status(ContainerStatusRequest { container_id: c2.clone(), verbose: false }).await.expect("ContainerStatus").into_inner().status.expect("a status");
            if status.state == ContainerState::ContainerExited as i32 {
                break;
            }
            assert!(Instant::now() < deadline, "containerd still thinks c2 runs after its shim died: {status:?}\n{}", containerd.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containerd.leftovers().is_empty() {
            assert!(Instant::now() < deadline, "the pod's zone outlived its shim: {:?}", containerd.leftovers());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("StopPodSandbox");
        cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("RemovePodSandbox");
    });
    containerd.assert_clean();
}
