//! Child processes that cannot outlive the test process.
//!
//! Every child is started with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the thread
//! that started it ends. Children are therefore started from one thread that lives as long as the
//! process: a test thread that starts a shared control plane and then finishes must not take the
//! control plane with it, but a test binary that exits, panics or is killed always does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static mpsc::Sender<Request> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_with_pdeathsig(&mut command));
                }
                // The sender lives in a static and is never dropped: this thread, and with it the
                // parent-death guarantee, lasts until the process exits.
            })
            .map_or_else(|_| mpsc::channel().0, |_| tx)
    })
}

#[allow(unsafe_code)] // one audited pre_exec hook; std offers no safe way to set PDEATHSIG
fn spawn_with_pdeathsig(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only calls prctl(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    command.spawn()
}

/// A running component (etcd, kube-apiserver, ...) whose output goes to a log file.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args`, writing stdout and stderr to `<log_dir>/<name>.log`.
    pub fn start(
        name: &'static str,
        binary: &Path,
        args: &[String],
        log_dir: &Path,
    ) -> std::io::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let (tx, rx) = mpsc::channel();
        spawner()
            .send((command, tx))
            .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
        let child = rx
            .recv()
            .map_err(|_| std::io::Error::other("the spawner thread is gone"))??;
        tracing::debug!(component = name, pid = child.id(), "started");
        Ok(Process { name, child, log })
    }

    /// The component's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running; if not, its exit status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Asks it to stop (SIGTERM), then kills it (SIGKILL) if it has not stopped within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        terminate(&mut self.child, grace);
    }
}

/// Asks `child` to stop (SIGTERM), then kills it (SIGKILL) if it has not exited within `grace`;
/// waits for it either way. A process that stops on its own flushes what it writes at exit
/// (profilers, logs).
pub fn terminate(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
