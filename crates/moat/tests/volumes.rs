//! `moat volume …` end to end, through the real binary. No zone boots: volumes are host state.

mod common;

use common::{stdout, Moat};

#[test]
fn create_list_inspect_remove() {
    let moat = Moat::new();
    assert_eq!(moat.ok(&["volume", "create", "v1"]), "v1\n");
    assert_eq!(moat.ok(&["volume", "create", "v1"]), "v1\n", "creating an existing volume returns it");
    let generated = moat.ok(&["volume", "create"]);
    let generated = generated.trim();
    assert!(generated.len() == 64 && generated.bytes().all(|b| b.is_ascii_hexdigit()), "{generated}");

    let table = moat.ok(&["volume", "ls"]);
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("DRIVER    VOLUME NAME"));
    let rows: Vec<_> = lines.map(|l| l.split_whitespace().collect::<Vec<_>>()).collect();
    assert!(rows.contains(&vec!["local", "v1"]) && rows.contains(&vec!["local", generated]), "{table}");
    let mut names = vec!["v1", generated];
    names.sort_unstable();
    assert_eq!(moat.ok(&["volume", "ls", "-q"]).lines().collect::<Vec<_>>(), names);

    let inspected: serde_json::Value = serde_json::from_str(&moat.ok(&["volume", "inspect", "v1"])).unwrap();
    let v1 = &inspected[0];
    assert_eq!(inspected.as_array().map(Vec::len), Some(1));
    assert_eq!(v1["Name"], "v1");
    assert_eq!(v1["Driver"], "local");
    assert_eq!(v1["Scope"], "local");
    assert_eq!(v1["Labels"], serde_json::json!({}));
    assert_eq!(v1["Options"], serde_json::json!({}));
    let created = v1["CreatedAt"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z') && &created[10..11] == "T", "{created}");
    let mountpoint = std::path::PathBuf::from(v1["Mountpoint"].as_str().unwrap());
    assert_eq!(mountpoint, moat.root().canonicalize().unwrap().join("volumes/v1/_data"));
    assert!(mountpoint.is_dir());

    let both: serde_json::Value = serde_json::from_str(&moat.ok(&["volume", "inspect", "v1", generated])).unwrap();
    assert_eq!(both[1]["Name"], generated);

    assert_eq!(moat.ok(&["volume", "rm", "v1", generated]), format!("v1\n{generated}\n"));
    assert!(!mountpoint.exists());
    assert_eq!(moat.ok(&["volume", "ls", "-q"]), "");
    let err = moat.one_error_line(&["volume", "inspect", "v1"]);
    assert!(err.contains("no such volume: v1"), "{err}");
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let moat = Moat::new();
    for bad in ["../escape", ".hidden", "a/b", "x:y"] {
        let err = moat.one_error_line(&["volume", "create", bad]);
        assert!(err.contains("is invalid"), "{err}");
    }
    assert_eq!(moat.ok(&["volume", "ls", "-q"]), "");
    assert!(!moat.root().join("escape").exists());

    moat.ok(&["volume", "create", "keep"]);
    let err = moat.one_error_line(&["volume", "rm", "keep", "missing"]);
    assert!(err.contains("no such volume: missing"), "{err}");
    let err = moat.one_error_line(&["volume", "inspect", "keep", "missing"]);
    assert!(err.contains("no such volume: missing"), "{err}");
    assert_eq!(moat.ok(&["volume", "ls", "-q"]), "keep\n", "a failed rm removed nothing");

    assert_eq!(moat.ok(&["volume", "rm", "-f", "missing", "keep"]), "keep\n");
}

fn zone_with_container(zone: &str, container: &str) -> moat_zone::state::ZoneRecord {
    use moat_zone::state::{ContainerRecord, ZoneConfig, ZoneRecord};
    let c = ContainerRecord { id: container.into(), name: container.into(), image: "i".into(), command: vec![], privileged: false, created_unix: 1, started_unix: None, exit: None, auto_remove: false, memory_limit: None, tty: false, stdin: false };
    ZoneRecord {
        id: zone.into(),
        name: zone.into(),
        created_unix: 1,
        config: ZoneConfig { cpus: 1, memory_mib: 256, accel: moat_zone::accel::Accel::Tcg, accel_note: None, debug: false, scratch_mib: 0, pod: true, extra_disks: Vec::new(), network: Default::default(), extra_hosts: Vec::new(), pool: false, oci_runtime: Default::default(), kernel: Default::default() },
        state: moat_zone::lifecycle::ZoneState::Stopped { reason: "test".into() },
        supervisor: None,
        qemu: None,
        virtiofsd: None,
        passt: None,
        cgroups: Vec::new(),
        kernel_release: None,
        boot_ms: None,
        prepared: false,
        containers: vec![c],
    }
}

#[test]
fn a_volume_in_use_is_not_removed() {
    let moat = Moat::new();
    moat.ok(&["volume", "create", "data"]);
    // What the runtime leaves while container c1 (of a stopped zone z1) uses the volume. Real
    // containers in real zones are in tests/pods.rs; this is the record alone.
    let users = moat.root().join("volumes/data/users");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("c1"), "").unwrap();
    let zone = zone_with_container("z1", "c1");
    let store = moat_zone::state::ZoneStore::open(moat.root()).unwrap();
    let dir = store.create(&zone).unwrap();

    let err = moat.one_error_line(&["volume", "rm", "-f", "data"]);
    assert!(err.contains("in use by c1"), "{err}");
    assert_eq!(moat.ok(&["volume", "ls", "-q"]), "data\n");

    // The container is gone, so the marker is stale.
    store.remove(&dir).unwrap();
    assert_eq!(moat.ok(&["volume", "rm", "data"]), "data\n");
    assert_eq!(stdout(&moat.run(&["volume", "ls", "-q"])), "");
}

#[test]
fn list_as_json() {
    let moat = Moat::new();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&moat.ok(&["volume", "ls", "--format", "json"])).unwrap(), serde_json::json!([]));
    moat.ok(&["volume", "create", "j"]);
    let listed: serde_json::Value = serde_json::from_str(&moat.ok(&["volume", "ls", "--format", "json"])).unwrap();
    assert_eq!(listed[0]["Name"], "j");
    assert_eq!(listed[0]["Driver"], "local");
}
