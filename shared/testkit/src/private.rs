//! Private Redis and PostgreSQL servers, for fault tests that stop and restart
//! them without disturbing the shared servers other tests use.

use std::time::Duration;

/// A private `redis-server` child process, for tests that stop and restart Redis
/// without disturbing the shared server other tests use.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> anyhow::Result<PrivateRedis> {
        let port = crate::free_port();
        let mut r = PrivateRedis { port, child: None };
        r.restart()?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("redis-server did not start on port {}", self.port)
    }

    /// Kills the server, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster (initdb in a temporary directory, its own port),
/// for tests that stop and restart the database without disturbing the shared
/// server other tests use. Run as the `postgres` user when the tests run as root,
/// since PostgreSQL refuses to run as root.
pub struct PrivatePostgres {
    pub port: u16,
    dir: std::path::PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> anyhow::Result<PrivatePostgres> {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("retention-pg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            run_checked(
                std::process::Command::new("chown")
                    .args(["postgres:postgres", &dir.to_string_lossy()]),
            )?;
        }
        let pg = PrivatePostgres { port, dir };
        run_checked(pg.as_postgres("initdb").args([
            "-D",
            &pg.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))?;
        pg.restart()?;
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn as_postgres(&self, program: &str) -> std::process::Command {
        if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.to_string_lossy()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        run_checked(self.as_postgres("pg_ctl").args([
            "-D",
            &self.data(),
            "-o",
            &options,
            "-l",
            &log,
            "-w",
            "start",
        ]))
    }

    /// Stops the server at once, as a crash would (committed work survives).
    pub fn stop(&self) -> anyhow::Result<()> {
        run_checked(self.as_postgres("pg_ctl").args([
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn run_checked(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
