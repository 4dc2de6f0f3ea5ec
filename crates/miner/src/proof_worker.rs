//! Heavy proof work in a child process at a lower CPU priority, so that WindowPoSt wins every
//! contest for the cores and a stop never waits on a proof.
//!
//! Sealing's pre-commit 1 and 2, commit 1 and 2, and unsealing run in `nelumbo-miner
//! proof-worker` children at nice 19 (`[sealing] worker_nice`); a WinningPoSt runs in one at nice
//! 10 (`[mining] worker_nice`). WindowPoSt runs in the hub itself at normal priority. The
//! proofs library's thread pools are per process, so a C2 and a WindowPoSt no longer share
//! threads, and the kernel's scheduler gives the cores to the WindowPoSt whenever both want
//! them (a nice-19 process gets about 1.5% of a core against a nice-0 one). Why not one process
//! with a priority queue: a proof already running cannot be paused or preempted inside the
//! library, and its threads cannot be told apart from a WindowPoSt's.
//!
//! A child reads its job (JSON) on standard input and writes the result on standard output.
//! It is killed when its future is dropped: SIGTERM to the hub stops a running C2 or unseal at
//! once (its state is on disk; the step runs again at the next start). The hub checks the
//! parameter files' digests at its start; its children trust that check rather than hash
//! gigabytes again for every job (a hub whose check failed lets each child check for itself).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nelumbo_commp::{Commitment, PaddedPieceSize, SectorPiece};
use nelumbo_proofs::{
    Commit1Output, PostKind, PreCommit1Output, Prover, ProvingSector, Replica, SealedCommitments,
    SectorPaths,
};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A sector's files, as a job carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paths {
    pub unsealed: PathBuf,
    pub sealed: PathBuf,
    pub cache: PathBuf,
}

impl From<&SectorPaths> for Paths {
    fn from(p: &SectorPaths) -> Self {
        Self {
            unsealed: p.unsealed.clone(),
            sealed: p.sealed.clone(),
            cache: p.cache.clone(),
        }
    }
}

impl From<Paths> for SectorPaths {
    fn from(p: Paths) -> Self {
        Self {
            unsealed: p.unsealed,
            sealed: p.sealed,
            cache: p.cache,
        }
    }
}

/// A piece, as a job carries it: commitment and padded size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Piece {
    pub commitment: [u8; 32],
    pub size: u64,
}

fn pieces_out(pieces: &[SectorPiece]) -> Vec<Piece> {
    pieces
        .iter()
        .map(|p| Piece {
            commitment: p.commitment.0,
            size: p.size.bytes(),
        })
        .collect()
}

fn pieces_in(pieces: &[Piece]) -> anyhow::Result<Vec<SectorPiece>> {
    pieces
        .iter()
        .map(|p| {
            Ok(SectorPiece {
                commitment: Commitment(p.commitment),
                size: PaddedPieceSize::new(p.size)?,
            })
        })
        .collect()
}

/// A sealed sector to prove, as a job carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostSector {
    pub number: u64,
    pub comm_r: [u8; 32],
    pub sealed: PathBuf,
    pub cache: PathBuf,
}

/// What a child is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub enum Job {
    PreCommit1 {
        replica: Replica,
        paths: Paths,
        pieces: Vec<Piece>,
    },
    PreCommit2 {
        phase1: PreCommit1Output,
        paths: Paths,
    },
    Commit1 {
        replica: Replica,
        paths: Paths,
        seed: Randomness,
        comm_r: [u8; 32],
        comm_d: [u8; 32],
        pieces: Vec<Piece>,
    },
    Commit2 {
        replica: Replica,
        phase1: Commit1Output,
    },
    /// Unsealed bytes `[offset, offset + len)` of the sector into the file `out`.
    Unseal {
        replica: Replica,
        paths: Paths,
        comm_d: [u8; 32],
        offset: u64,
        len: u64,
        out: PathBuf,
    },
    WinningPost {
        size: SectorSize,
        miner: u64,
        seed: [u8; 32],
        sectors: Vec<PostSector>,
    },
}

impl Job {
    fn name(&self) -> &'static str {
        match self {
            Self::PreCommit1 { .. } => "PreCommit1",
            Self::PreCommit2 { .. } => "PreCommit2",
            Self::Commit1 { .. } => "Commit1",
            Self::Commit2 { .. } => "Commit2",
            Self::Unseal { .. } => "Unseal",
            Self::WinningPost { .. } => "WinningPost",
        }
    }
}

/// What a child answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Done {
    PreCommit1(PreCommit1Output),
    PreCommit2 { comm_r: [u8; 32], comm_d: [u8; 32] },
    Commit1(Commit1Output),
    Commit2(Vec<u8>),
    Unseal(u64),
    Post(Vec<u8>),
}

/// Runs jobs in children of this executable.
#[derive(Debug, Clone)]
pub struct ProofWorkers {
    exe: PathBuf,
    /// Whether the hub checked the parameter files at its start.
    params_checked: bool,
    /// Niceness of sealing and unsealing children, and of WinningPoSt children.
    pub sealing_nice: i32,
    pub winning_nice: i32,
}

impl ProofWorkers {
    pub fn new(sealing_nice: i32, winning_nice: i32, params_checked: bool) -> anyhow::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe().context("find the nelumbo-miner executable")?,
            params_checked,
            sealing_nice,
            winning_nice,
        })
    }

    /// Runs `job` in a child at `nice`; the child is killed if this future is dropped.
    async fn run(&self, job: &Job, nice: i32) -> anyhow::Result<Done> {
        let input = serde_json::to_vec(job)?;
        let mut child = tokio::process::Command::new(&self.exe)
            .args([
                "proof-worker",
                "--nice",
                &nice.to_string(),
                "--job",
                job.name(),
            ])
            .env(PARAMS_CHECKED, if self.params_checked { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start a proof worker ({})", self.exe.display()))?;
        let mut stdin = child.stdin.take().context("the worker's stdin")?;
        let mut stdout = child.stdout.take().context("the worker's stdout")?;
        let mut stderr = child.stderr.take().context("the worker's stderr")?;
        let write = async move {
            stdin.write_all(&input).await?;
            stdin.shutdown().await
        };
        let mut output = Vec::new();
        let mut errors = Vec::new();
        let (written, read, read_errors) = tokio::join!(
            write,
            stdout.read_to_end(&mut output),
            stderr.read_to_end(&mut errors)
        );
        read?;
        read_errors?;
        let status = child.wait().await?;
        let errors = String::from_utf8_lossy(&errors);
        if !status.success() {
            anyhow::bail!(
                "the {} proof worker failed ({status}): {}",
                job.name(),
                errors.trim()
            );
        }
        written.context("send the job to the proof worker")?;
        serde_json::from_slice(&output)
            .with_context(|| format!("read the {} proof worker's answer", job.name()))
    }

    pub async fn pre_commit1(
        &self,
        replica: Replica,
        paths: &SectorPaths,
        pieces: &[SectorPiece],
    ) -> anyhow::Result<PreCommit1Output> {
        let job = Job::PreCommit1 {
            replica,
            paths: paths.into(),
            pieces: pieces_out(pieces),
        };
        match self.run(&job, self.sealing_nice).await? {
            Done::PreCommit1(output) => Ok(output),
            other => unexpected(&job, &other),
        }
    }

    pub async fn pre_commit2(
        &self,
        phase1: PreCommit1Output,
        paths: &SectorPaths,
    ) -> anyhow::Result<SealedCommitments> {
        let job = Job::PreCommit2 {
            phase1,
            paths: paths.into(),
        };
        match self.run(&job, self.sealing_nice).await? {
            Done::PreCommit2 { comm_r, comm_d } => Ok(SealedCommitments {
                comm_r,
                comm_d: Commitment(comm_d),
            }),
            other => unexpected(&job, &other),
        }
    }

    pub async fn commit1(
        &self,
        replica: Replica,
        paths: &SectorPaths,
        seed: Randomness,
        sealed: &SealedCommitments,
        pieces: &[SectorPiece],
    ) -> anyhow::Result<Commit1Output> {
        let job = Job::Commit1 {
            replica,
            paths: paths.into(),
            seed,
            comm_r: sealed.comm_r,
            comm_d: sealed.comm_d.0,
            pieces: pieces_out(pieces),
        };
        match self.run(&job, self.sealing_nice).await? {
            Done::Commit1(output) => Ok(output),
            other => unexpected(&job, &other),
        }
    }

    pub async fn commit2(
        &self,
        replica: Replica,
        phase1: Commit1Output,
    ) -> anyhow::Result<Vec<u8>> {
        let job = Job::Commit2 { replica, phase1 };
        match self.run(&job, self.sealing_nice).await? {
            Done::Commit2(proof) => Ok(proof),
            other => unexpected(&job, &other),
        }
    }

    pub async fn unseal(
        &self,
        replica: Replica,
        paths: &SectorPaths,
        comm_d: Commitment,
        offset: u64,
        len: u64,
        out: PathBuf,
    ) -> anyhow::Result<u64> {
        let job = Job::Unseal {
            replica,
            paths: paths.into(),
            comm_d: comm_d.0,
            offset,
            len,
            out,
        };
        match self.run(&job, self.sealing_nice).await? {
            Done::Unseal(written) => Ok(written),
            other => unexpected(&job, &other),
        }
    }

    pub async fn winning_post(
        &self,
        size: SectorSize,
        miner: ActorId,
        seed: [u8; 32],
        sectors: Vec<ProvingSector>,
    ) -> anyhow::Result<Vec<u8>> {
        let job = Job::WinningPost {
            size,
            miner: miner.0,
            seed,
            sectors: sectors
                .into_iter()
                .map(|s| PostSector {
                    number: s.number.0,
                    comm_r: s.comm_r,
                    sealed: s.sealed,
                    cache: s.cache,
                })
                .collect(),
        };
        match self.run(&job, self.winning_nice).await? {
            Done::Post(proof) => Ok(proof),
            other => unexpected(&job, &other),
        }
    }
}

fn unexpected<T>(job: &Job, done: &Done) -> anyhow::Result<T> {
    anyhow::bail!(
        "the {} proof worker answered something else: {:?}",
        job.name(),
        std::mem::discriminant(done)
    )
}

/// Set by the hub for its workers when it checked the parameter files at its start.
const PARAMS_CHECKED: &str = "NELUMBO_PROOF_PARAMS_CHECKED";

/// `nelumbo-miner proof-worker --nice N`: reads one job on standard input, does it, writes the
/// result on standard output. `NELUMBO_PROOF_WORKER_DELAY=JOB:MS` pauses before the work (a
/// failpoint for the shutdown tests; the log of the hub warns when it is set).
pub fn serve(nice: i32) -> anyhow::Result<()> {
    // A worker whose hub died (SIGKILL, a crash) stops too, rather than burn the cores for a
    // result nobody reads.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("ask to be stopped with the hub")?;
    if nice != 0 {
        rustix::process::setpriority_process(None, nice)
            .with_context(|| format!("set the worker's priority to nice {nice}"))?;
    }
    let mut input = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)
        .context("read the job from standard input")?;
    let job: Job = serde_json::from_slice(&input).context("the job is not valid")?;
    if let Ok(value) = std::env::var("NELUMBO_PROOF_WORKER_DELAY")
        && let Some((name, millis)) = value.split_once(':')
        && name == job.name()
    {
        let millis: u64 = millis.parse().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(millis));
    }
    if std::env::var(PARAMS_CHECKED).is_ok_and(|v| v == "1") {
        nelumbo_proofs::params::trust_files_checked_by_parent();
    }
    let prover = Prover::from_env().context("set up the proofs library")?;
    let done = work(&prover, job)?;
    let output = serde_json::to_vec(&done)?;
    std::io::Write::write_all(&mut std::io::stdout(), &output)
        .context("write the result to standard output")?;
    Ok(())
}

fn work(prover: &Prover, job: Job) -> anyhow::Result<Done> {
    Ok(match job {
        Job::PreCommit1 {
            replica,
            paths,
            pieces,
        } => Done::PreCommit1(prover.pre_commit1(&replica, &paths.into(), &pieces_in(&pieces)?)?),
        Job::PreCommit2 { phase1, paths } => {
            let sealed = prover.pre_commit2(phase1, &paths.into())?;
            Done::PreCommit2 {
                comm_r: sealed.comm_r,
                comm_d: sealed.comm_d.0,
            }
        }
        Job::Commit1 {
            replica,
            paths,
            seed,
            comm_r,
            comm_d,
            pieces,
        } => Done::Commit1(prover.commit1(
            &replica,
            &paths.into(),
            seed,
            &SealedCommitments {
                comm_r,
                comm_d: Commitment(comm_d),
            },
            &pieces_in(&pieces)?,
        )?),
        Job::Commit2 { replica, phase1 } => Done::Commit2(prover.commit2(&replica, phase1)?.0),
        Job::Unseal {
            replica,
            paths,
            comm_d,
            offset,
            len,
            out,
        } => {
            let file =
                std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
            let written = prover.unseal_range(
                &replica,
                &paths.into(),
                &Commitment(comm_d),
                offset,
                len,
                &file,
            )?;
            file.sync_all()?;
            Done::Unseal(written)
        }
        Job::WinningPost {
            size,
            miner,
            seed,
            sectors,
        } => {
            let sectors: Vec<ProvingSector> = sectors
                .into_iter()
                .map(|s| ProvingSector {
                    number: SectorNumber(s.number),
                    comm_r: s.comm_r,
                    sealed: s.sealed,
                    cache: s.cache,
                })
                .collect();
            Done::Post(prover.generate_post(
                PostKind::Winning,
                size,
                ActorId(miner),
                Randomness(seed),
                &sectors,
            )?)
        }
    })
}
