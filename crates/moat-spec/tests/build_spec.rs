//! Builds whole specs from a real image config (the shape Docker Hub's alpine and nginx images
//! carry) and checks the privilege semantics end to end, through JSON as the zone receives it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use moat_spec::caps::mask_of;
use moat_spec::devices::mask_host_links;
use moat_spec::profile::{ZONE_ID_MAP_SIZE, ZONE_ID_MAP_START};
use moat_spec::resources::{container_memory_limit, Cpus};
use moat_spec::user::{apply_user, UserError};
use moat_spec::{
    build_spec, default_seccomp, from_json, is_privileged, to_json, RunOptions, SpecError,
    MAX_SPEC_JSON_BYTES,
};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxNamespaceType, LinuxSeccompAction, Spec};

const IMAGE_CONFIG: &str = r#"{
  "architecture": "amd64",
  "os": "linux",
  "config": {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27.0"],
    "Entrypoint": ["/docker-entrypoint.sh"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "WorkingDir": "/srv",
    "User": "nginx"
  },
  "rootfs": {"type": "layers", "diff_ids": ["sha256:94e5f06ff8e3d4441dc3cd8b090ff38dc911bfa8ebdb0dc28395bc98f82f983f"]}
}"#;

fn image() -> ImageConfiguration {
    ImageConfiguration::from_reader(IMAGE_CONFIG.as_bytes()).expect("image config parses")
}

fn caller_env() -> BTreeMap<String, String> {
    BTreeMap::from([("TOKEN".to_string(), "from-caller".to_string())])
}

fn build(opts: &RunOptions) -> Spec {
    build_spec(&image(), opts, &caller_env()).expect("spec builds")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn caps_masks(spec: &Spec) -> [u64; 5] {
    let caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .expect("capabilities");
    let mask = |set: &Option<_>| mask_of(set.as_ref().expect("set present"));
    [
        mask(caps.bounding()),
        mask(caps.effective()),
        mask(caps.permitted()),
        mask(caps.inheritable()),
        mask(caps.ambient()),
    ]
}

fn namespaces(spec: &Spec) -> Vec<LinuxNamespaceType> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .expect("namespaces")
        .iter()
        .map(|n| n.typ())
        .collect()
}

fn mount_options(spec: &Spec, destination: &str) -> Vec<String> {
    spec.mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == &PathBuf::from(destination))
        .and_then(|m| m.options().clone())
        .unwrap_or_else(|| panic!("no mount {destination}"))
}

fn device_rules(spec: &Spec) -> Vec<LinuxDeviceCgroup> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .expect("device cgroup rules")
}

fn seccomp_allows(spec: &Spec, syscall: &str) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .and_then(|s| s.syscalls().clone())
        .unwrap_or_default()
        .iter()
        .any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == syscall)
        })
}

#[test]
fn the_filter_a_pooled_zone_prepares_for_is_a_plain_runs() {
    let plain = build(&RunOptions::default());
    let expected = plain.linux().as_ref().and_then(|l| l.seccomp().clone());
    assert!(expected.is_some());
    assert_eq!(default_seccomp().expect("builds"), expected);
    let privileged = build(&RunOptions {
        privileged: true,
        ..RunOptions::default()
    });
    assert_ne!(
        privileged.linux().as_ref().and_then(|l| l.seccomp().clone()),
        expected
    );
}

#[test]
fn unprivileged_default_is_dockers_with_a_user_namespace() {
    let spec = build(&RunOptions::default());
    assert_eq!(
        caps_masks(&spec),
        [0xa80425fb, 0xa80425fb, 0xa80425fb, 0, 0]
    );

    let ns = namespaces(&spec);
    for expected in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::User,
    ] {
        assert!(ns.contains(&expected), "{expected:?}");
    }
    assert_eq!(ns.len(), 7);

    let linux = spec.linux().as_ref().expect("linux");
    let uid_map = linux.uid_mappings().as_ref().expect("uid map");
    assert_eq!(
        (
            uid_map[0].container_id(),
            uid_map[0].host_id(),
            uid_map[0].size()
        ),
        (0, ZONE_ID_MAP_START, ZONE_ID_MAP_SIZE)
    );
    assert_eq!(linux.gid_mappings(), linux.uid_mappings());

    let seccomp = linux.seccomp().as_ref().expect("seccomp");
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(seccomp.default_errno_ret(), Some(1));
    assert!(!seccomp_allows(&spec, "unshare"));

    let masked = linux.masked_paths().as_ref().expect("masked");
    for path in [
        "/proc/kcore",
        "/proc/keys",
        "/sys/firmware",
        "/proc/interrupts",
    ] {
        assert!(masked.contains(&path.to_string()), "{path}");
    }
    assert_eq!(linux.readonly_paths().as_ref().map(Vec::len), Some(5));
    assert!(mount_options(&spec, "/sys").contains(&"ro".to_string()));
    assert!(mount_options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
    assert_eq!(linux.devices().as_ref().map(Vec::len), Some(6));
    let rules = device_rules(&spec);
    assert_eq!(rules[0].to_string(), "a *:* rwm");
    assert!(!rules[0].allow());
    assert!(!is_privileged(&spec));
    assert_eq!(
        spec.process().as_ref().and_then(|p| p.no_new_privileges()),
        Some(false)
    );
}

#[test]
fn image_config_supplies_command_env_workdir_and_user() {
    let spec = build(&RunOptions {
        hostname: Some("c0ffee123456".into()),
        ..RunOptions::default()
    });
    let process = spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().clone(),
        Some(strings(&[
            "/docker-entrypoint.sh",
            "nginx",
            "-g",
            "daemon off;"
        ]))
    );
    assert_eq!(process.cwd(), &PathBuf::from("/srv"));
    let env = process.env().clone().expect("env");
    assert!(env.contains(&"NGINX_VERSION=1.27.0".to_string()));
    assert!(env.contains(&"HOSTNAME=c0ffee123456".to_string()));
    assert_eq!(spec.hostname().as_deref(), Some("c0ffee123456"));
    assert_eq!(
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get("moat.user"))
            .map(String::as_str),
        Some("nginx")
    );
    assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(false));
}

#[test]
fn flags_override_the_image() {
    let spec = build(&RunOptions {
        entrypoint: Some("/bin/sh".into()),
        command: strings(&["-c", "id"]),
        workdir: Some("/tmp/../work".into()),
        user: Some("1000:1000".into()),
        env: strings(&["TOKEN", "NGINX_VERSION=custom"]),
        env_files: strings(&["# settings\nMODE=test\n"]),
        tty: true,
        read_only: true,
        security_opt: strings(&["no-new-privileges"]),
        ..RunOptions::default()
    });
    let process = spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().clone(),
        Some(strings(&["/bin/sh", "-c", "id"]))
    );
    assert_eq!(process.cwd(), &PathBuf::from("/work"));
    assert_eq!(process.terminal(), Some(true));
    assert_eq!(process.no_new_privileges(), Some(true));
    let env = process.env().clone().expect("env");
    for expected in [
        "TOKEN=from-caller",
        "NGINX_VERSION=custom",
        "MODE=test",
        "TERM=xterm",
    ] {
        assert!(env.contains(&expected.to_string()), "{expected}: {env:?}");
    }
    assert!(!env.iter().any(|e| e == "NGINX_VERSION=1.27.0"));
    assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(true));
}

#[test]
fn privileged_is_everything_inside_the_zone() {
    let spec = build(&RunOptions {
        privileged: true,
        ..RunOptions::default()
    });
    assert_eq!(
        caps_masks(&spec),
        [0x1ffffffffff, 0x1ffffffffff, 0x1ffffffffff, 0, 0]
    );
    assert!(!namespaces(&spec).contains(&LinuxNamespaceType::User));
    let linux = spec.linux().as_ref().expect("linux");
    assert!(linux.uid_mappings().is_none());
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().is_none());
    assert!(linux.readonly_paths().is_none());
    assert!(!mount_options(&spec, "/sys").contains(&"ro".to_string()));
    assert!(!mount_options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
    let rules = device_rules(&spec);
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert_eq!(rules[0].to_string(), "a *:* rwm");
    assert!(is_privileged(&spec));
}

#[test]
fn privileged_guest_masks_the_zones_links_to_the_host() {
    let mut spec = from_json(
        &to_json(&build(&RunOptions {
            privileged: true,
            ..RunOptions::default()
        }))
        .expect("json"),
    )
    .expect("parse");
    assert!(is_privileged(&spec));
    let dev = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == &PathBuf::from("/dev"))
        .expect("/dev");
    assert_eq!(dev.typ().as_deref(), Some("bind"));
    assert_eq!(dev.source().as_deref(), Some(std::path::Path::new("/dev")));
    let names = ["vda", "vport0p1", "kmsg"].map(String::from);
    mask_host_links(&mut spec, &names, false).expect("masks");
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(
        linux.masked_paths().clone(),
        Some(vec!["/dev/console".to_string(), "/dev/vport0p1".to_string()])
    );
    assert_eq!(linux.devices().as_ref().map(Vec::len), Some(0));
}

#[test]
fn privileged_cap_drop_drops_from_the_full_set() {
    let spec = build(&RunOptions {
        privileged: true,
        cap_drop: strings(&["sys_admin", "CAP_NET_ADMIN"]),
        ..RunOptions::default()
    });
    let expected = 0x1ffffffffff & !(1 << 21) & !(1 << 12);
    assert_eq!(caps_masks(&spec)[..3], [expected; 3]);
}

#[test]
fn cap_add_syslog_keeps_the_user_namespace() {
    let spec = build(&RunOptions {
        cap_add: strings(&["SYSLOG"]),
        ..RunOptions::default()
    });
    assert_eq!(caps_masks(&spec)[1], 0xa80425fb | (1 << 34));
    assert!(namespaces(&spec).contains(&LinuxNamespaceType::User));
    assert!(
        seccomp_allows(&spec, "syslog"),
        "seccomp lets syslog(2) through; the kernel's capable() check in the user namespace still refuses it"
    );
}

#[test]
fn cap_add_sys_admin_opens_namespace_syscalls() {
    let spec = build(&RunOptions {
        cap_add: strings(&["CAP_SYS_ADMIN"]),
        ..RunOptions::default()
    });
    for syscall in ["unshare", "mount", "setns", "clone3"] {
        assert!(seccomp_allows(&spec, syscall), "{syscall}");
    }
}

#[test]
fn seccomp_choices() {
    let unconfined = build(&RunOptions {
        security_opt: strings(&["seccomp=unconfined"]),
        ..RunOptions::default()
    });
    assert!(unconfined
        .linux()
        .as_ref()
        .expect("linux")
        .seccomp()
        .is_none());

    let custom = build(&RunOptions {
        privileged: true,
        security_opt: strings(&[
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["keyctl"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ]),
        ..RunOptions::default()
    });
    let seccomp = custom
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .expect("custom profile applies, even privileged, as in Docker");
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);

    let err = build_spec(
        &image(),
        &RunOptions {
            security_opt: strings(&["seccomp={not json"]),
            ..RunOptions::default()
        },
        &caller_env(),
    )
    .expect_err("bad profile");
    assert!(matches!(err, SpecError::Seccomp(_)), "{err}");
    assert!(err
        .to_string()
        .starts_with("seccomp profile is not valid JSON"));
}

#[test]
fn bad_flags_are_typed_errors_naming_the_value() {
    let cases = [
        (
            RunOptions {
                cap_add: strings(&["CAP_TELEPORT"]),
                ..RunOptions::default()
            },
            "CAP_TELEPORT",
        ),
        (
            RunOptions {
                security_opt: strings(&["apparmor=docker-default"]),
                ..RunOptions::default()
            },
            "apparmor=docker-default",
        ),
        (
            RunOptions {
                workdir: Some("relative/dir".into()),
                ..RunOptions::default()
            },
            "relative/dir",
        ),
        (
            RunOptions {
                user: Some("a:b:c".into()),
                ..RunOptions::default()
            },
            "a:b:c",
        ),
        (
            RunOptions {
                env: strings(&["=value"]),
                ..RunOptions::default()
            },
            "=value",
        ),
    ];
    for (opts, value) in cases {
        let err = build_spec(&image(), &opts, &caller_env()).expect_err(value);
        assert!(err.to_string().contains(value), "{err}");
    }
}

#[test]
fn resources_and_terminal_reach_the_spec_as_json() {
    let spec = build(&RunOptions {
        tty: true,
        console_size: Some((40, 120)),
        zone_memory_mib: Some(512),
        cpus: Some(Cpus::parse("1.5", 2).expect("1.5 CPUs")),
        ..RunOptions::default()
    });
    let json: serde_json::Value =
        serde_json::from_str(&to_json(&spec).expect("json")).expect("JSON");
    assert_eq!(
        json["process"]["consoleSize"],
        serde_json::json!({"height": 40, "width": 120})
    );
    assert_eq!(json["process"]["oomScoreAdj"], 0);
    let resources = &json["linux"]["resources"];
    assert_eq!(
        resources["memory"]["limit"],
        container_memory_limit(512).expect("limit")
    );
    assert_eq!(resources["memory"]["limit"], 384 << 20);
    assert_eq!(
        resources["cpu"],
        serde_json::json!({"quota": 150000, "period": 100000})
    );

    // Whole CPUs are the zone's vCPUs: no quota. No zone memory: no limit. No tty: no size.
    let plain = build(&RunOptions {
        console_size: Some((40, 120)),
        cpus: Some(Cpus::whole(2)),
        ..RunOptions::default()
    });
    let json: serde_json::Value =
        serde_json::from_str(&to_json(&plain).expect("json")).expect("JSON");
    assert!(
        json["process"].get("consoleSize").is_none(),
        "{}",
        json["process"]
    );
    assert!(json["linux"]["resources"].get("memory").is_none());
    assert!(json["linux"]["resources"].get("cpu").is_none());

    let err = build_spec(
        &image(),
        &RunOptions {
            zone_memory_mib: Some(100),
            ..RunOptions::default()
        },
        &caller_env(),
    )
    .expect_err("too small a zone");
    assert!(matches!(err, SpecError::Resource(_)), "{err}");
}

#[test]
fn spec_round_trips_through_json_and_stays_small() {
    for privileged in [false, true] {
        let spec = build(&RunOptions {
            privileged,
            ..RunOptions::default()
        });
        let json = to_json(&spec).expect("json");
        let back: Spec = serde_json::from_str(&json).expect("oci-spec parses its own JSON");
        assert_eq!(back, spec);
        assert!(json.len() < 64 * 1024, "{} bytes", json.len());
        println!("privileged={privileged}: spec JSON is {} bytes", json.len());
    }
}

#[test]
fn oversized_spec_is_refused() {
    let big = format!("BIG={}", "x".repeat(MAX_SPEC_JSON_BYTES));
    let err = build_spec(
        &image(),
        &RunOptions {
            env: vec![big],
            ..RunOptions::default()
        },
        &caller_env(),
    )
    .expect_err("too large");
    assert!(matches!(err, SpecError::TooLarge { .. }), "{err}");
    assert!(matches!(
        from_json(&" ".repeat(MAX_SPEC_JSON_BYTES + 1)),
        Err(SpecError::TooLarge { .. })
    ));
}

#[test]
fn guest_applies_the_user_from_the_rootfs() {
    let passwd =
        "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n";
    let group = "root:x:0:\nnginx:x:101:\nwww:x:33:nginx\n";
    let mut spec = build(&RunOptions::default());
    let user = apply_user(&mut spec, Some(passwd), Some(group)).expect("user");
    assert_eq!((user.uid, user.gid), (101, 101));
    let process = spec.process().as_ref().expect("process");
    assert_eq!(process.user().uid(), 101);
    assert_eq!(process.user().gid(), 101);
    assert_eq!(
        process.user().additional_gids().clone(),
        Some(vec![101, 33])
    );
    assert!(process
        .env()
        .iter()
        .flatten()
        .any(|e| e == "HOME=/var/cache/nginx"));
}

#[test]
fn guest_refuses_a_uid_outside_the_user_namespace() {
    let mut spec = build(&RunOptions {
        user: Some("70000".into()),
        ..RunOptions::default()
    });
    let err = apply_user(&mut spec, None, None).expect_err("unmapped");
    assert!(
        matches!(err, UserError::Unmapped { id: 70000, .. }),
        "{err}"
    );

    let mut privileged = build(&RunOptions {
        user: Some("70000".into()),
        privileged: true,
        ..RunOptions::default()
    });
    let user = apply_user(&mut privileged, None, None).expect("no user namespace, any uid");
    assert_eq!(user.uid, 70000);
}
