//! The pid registry (`<root>/pids/<instance id>`) and the sweep of a previous run's
//! processes. Format and recovery rule: see the module docs of [`super`].

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid, getpgrp};

use super::logs::epoch_ms;

/// The variable that marks every process of an instance (inherited by its descendants).
pub(super) const INSTANCE_VAR: &str = "KINESIS_DATA_INSTANCE";

/// Records a live instance (write to `<id>.tmp`, then rename).
pub(super) fn record(dir: &Path, id: &str, pid: i32, arn: &str, version: &str) -> io::Result<()> {
    let started = epoch_ms(SystemTime::now());
    let text = format!("pid {pid}\npgid {pid}\nfunction {arn}\nversion {version}\nstarted_ms {started}\n");
    let tmp = dir.join(format!("{id}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(id))
}

/// Forgets a reaped instance.
pub(super) fn remove(dir: &Path, id: &str) {
    let _ = std::fs::remove_file(dir.join(id));
}

/// Whether `name` is an instance id (32 lowercase hex digits).
pub(super) fn is_instance_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Kills every process that carries `KINESIS_DATA_INSTANCE=<id>` for an id in the registry
/// (its process group too), then empties the registry. Returns how many processes it killed.
pub(super) fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut ids = HashSet::new();
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_instance_id(&name) {
            ids.insert(name);
        }
        files.push(entry.path());
    }
    let killed = if ids.is_empty() { 0 } else { kill_marked(&ids) };
    for file in files {
        let _ = std::fs::remove_file(file);
    }
    killed
}

fn kill_marked(ids: &HashSet<String>) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    let my_group = getpgrp();
    let prefix = format!("{INSTANCE_VAR}=");
    let mut killed = 0;
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 1 || u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        // Unreadable (another user's process, or gone): not ours to judge.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let ours = environ.split(|b| *b == 0).any(|var| {
            var.strip_prefix(prefix.as_bytes())
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|id| ids.contains(id))
        });
        if !ours {
            continue;
        }
        let pid = Pid::from_raw(pid);
        if let Ok(group) = getpgid(Some(pid))
            && group.as_raw() > 1
            && group != my_group
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
        killed += 1;
    }
    killed
}
