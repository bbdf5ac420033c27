//! `moat events` end to end: one real zone whose container is OOM-killed, seen by a follower
//! started before it and by a reader of the past afterwards.

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Moat, BUSYBOX};

fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"))).collect()
}

fn actions(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().map(|e| e["action"].as_str().unwrap_or_default()).collect()
}

#[test]
fn a_containers_life_is_journaled_in_order_for_followers_and_readers_of_the_past() {
    let moat = Moat::with_busybox();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let mut follower = moat.cmd(&["events", "--format", "json", "--filter", "container=eater"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("moat events");
    let (lines_tx, lines) = mpsc::channel();
    let follower_out = follower.stdout.take().expect("piped");
    std::thread::spawn(move || std::io::BufReader::new(follower_out).lines().map_while(Result::ok).try_for_each(|l| lines_tx.send(l)));

    // As in run_workloads.rs: dd's 200 MiB buffer is more than the 144 MiB limit of the container.
    let out = moat.run(&["run", "--rm", "--name", "eater", "--memory", "256m", BUSYBOX, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));

    let expected = ["create", "start", "oom", "die", "zone-stopped", "destroy"];
    let past = parse_lines(&moat.ok(&["events", "--since", &since, "--until", "now", "--format", "json", "--filter", "container=eater"]));
    assert_eq!(actions(&past), expected, "{past:#?}");
    let id = past[0]["id"].as_str().expect("an id");
    assert!(past.iter().all(|e| e["id"] == id && e["name"] == "eater"), "{past:#?}");
    assert_eq!(past[0]["attributes"]["image"], past[3]["attributes"]["image"]);
    assert_eq!(past[3]["attributes"]["exitCode"], "137");
    assert_eq!((past[3]["type"].as_str(), past[4]["type"].as_str()), (Some("container"), Some("zone")));
    assert!(past[4]["attributes"]["reason"].as_str().is_some_and(|r| r.contains("OOM")), "{:?}", past[4]);
    assert!(past.windows(2).all(|w| w[0]["timeNano"].as_u64() <= w[1]["timeNano"].as_u64()));

    let mut followed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while followed.len() < expected.len() && Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            followed.push(line);
        }
    }
    let _ = follower.kill();
    let ended = follower.wait().expect("the follower ends");
    assert_eq!(ended.code(), None, "the follower ran until killed");
    assert_eq!(actions(&parse_lines(&followed.join("\n"))), expected, "the follower saw the same events as they came");

    let text = moat.ok(&["events", "--since", &since, "--until", "now", "--filter", "event=die", "--filter", "type=container"]);
    let die = text.lines().collect::<Vec<_>>();
    assert_eq!(die.len(), 1, "{text}");
    assert!(die[0].contains(&format!(" container die {id} (exitCode=137, image=")) && die[0].ends_with(", name=eater)"), "{text}");

    let err = moat.one_error_line(&["events", "--since", "garbage"]);
    assert!(err.contains("--since garbage: expected"), "{err}");
    let err = moat.one_error_line(&["events", "--until", "now", "--filter", "type=volume"]);
    assert!(err.contains("--filter type=volume: expected one of container, zone"), "{err}");
    assert_eq!(stdout(&moat.run(&["events", "--since", "1h", "--until", "30m"])), "", "nothing happened in that half hour");
    moat.assert_nothing_running();
}
