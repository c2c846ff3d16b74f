//! The gateway binary as a child process, for what only a real process shows: the banner, the
//! environment it reads, signals and upgrades. Killed when the handle drops, so a failing test
//! leaves nothing running.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Process(pub Child);

impl Process {
    pub fn spawn(cmd: &mut Command) -> Process {
        Process(cmd.spawn().expect("the gateway binary starts"))
    }

    /// Send a signal by name (`"QUIT"`, `"TERM"` …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait for the process to exit and return what it wrote to stderr (when piped).
    pub fn wait_for_stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        let _ = self.0.wait();
        text
    }

    /// Kill it now and return what it wrote to stderr so far.
    pub fn kill_for_stderr(&mut self) -> String {
        let _ = self.0.kill();
        self.wait_for_stderr()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `llm-forward` run in `cwd` at `RUST_LOG=warn`, stdout discarded, stderr piped, with none of
/// openai-forward's variables from the test runner's environment.
pub fn gateway_command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-forward"));
    cmd.current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in llm_forward::config::openai_forward::MARKERS {
        cmd.env_remove(var);
    }
    cmd
}

/// A `server:` section listening on 127.0.0.1:`port`, its pid file and upgrade socket in
/// `dir` (so parallel tests never share them), plus `extra` lines (indented two spaces); then an
/// `admin:` section on a free port of its own (never the shared default 127.0.0.1:8001).
pub fn server_yaml(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        r#"server:
  listen: ['127.0.0.1:{port}']
  pid_file: '{}'
  upgrade_sock: '{}'
{extra}admin:
  listen: '127.0.0.1:{}'
"#,
        dir.join("pid").display(),
        dir.join("upgrade.sock").display(),
        super::free_port(),
    )
}

/// The admin listener's address in a config written with [`server_yaml`].
pub fn admin_addr(yaml: &str) -> std::net::SocketAddr {
    let line = yaml
        .lines()
        .skip_while(|l| *l != "admin:")
        .find_map(|l| l.trim().strip_prefix("listen: "))
        .expect("an admin section from server_yaml");
    line.trim_matches('\'').parse().expect("IP:PORT")
}
