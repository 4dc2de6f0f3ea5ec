//! `nelumbo proofs`: Groth parameters.

use std::cell::RefCell;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{HumanBytes, HumanDuration};
use nelumbo_proofs::{ParamEvent, ParamSeed, ParamStatus, ProofsConfig, SectorProofs};
use nelumbo_types::SectorSize;

use crate::progress::Activity;

#[derive(Debug, Subcommand)]
pub enum ProofsCommand {
    /// Generate the Groth parameters a sector size needs, or check them with --check.
    ///
    /// Parameters are generated once per machine from a seed (2 KiB: about 15 minutes and
    /// 1.1 GB) into FIL_PROOFS_PARAMETER_CACHE, by default ~/.cache/nelumbo/params. The same
    /// seed gives byte-identical files on every machine.
    Params {
        /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.
        #[arg(long, value_parser = parse_sector_size)]
        sector_size: SectorSize,
        /// Only check the files (digest, size, seed); generate nothing.
        #[arg(long)]
        check: bool,
        /// The seed to generate from, 64 hex characters (default: the devnet seed).
        #[arg(long)]
        seed: Option<ParamSeed>,
    },
}

fn parse_sector_size(text: &str) -> Result<SectorSize, String> {
    text.parse()
        .map_err(|e: nelumbo_types::SizeError| e.to_string())
}

pub fn run(command: ProofsCommand) -> anyhow::Result<()> {
    match command {
        ProofsCommand::Params {
            sector_size,
            check,
            seed,
        } => params(sector_size, check, seed),
    }
}

pub(crate) fn params(
    sector_size: SectorSize,
    check: bool,
    seed: Option<ParamSeed>,
) -> anyhow::Result<()> {
    let mut config = ProofsConfig::from_env()?;
    if let Some(seed) = seed {
        config.param_seed = seed;
    }
    let config = nelumbo_proofs::init(config)?;
    let cache = config.param_cache();
    println!(
        "parameter directory: {} (seed {})",
        cache.dir().display(),
        cache.seed().fingerprint()
    );
    if check {
        let mut bad = 0;
        for circuit in SectorProofs::for_size(sector_size).circuits() {
            let status = cache.status(circuit)?;
            match &status {
                ParamStatus::Ready => println!("{circuit}: ready"),
                ParamStatus::Missing => println!("{circuit}: missing"),
                ParamStatus::Invalid(why) => println!("{circuit}: invalid: {why}"),
            }
            bad += usize::from(status != ParamStatus::Ready);
        }
        anyhow::ensure!(
            bad == 0,
            "{bad} circuit(s) not ready: run `nelumbo proofs params --sector-size {sector_size}` to generate them"
        );
        return Ok(());
    }

    let activity: RefCell<Option<Activity>> = RefCell::new(None);
    let report = cache
        .ensure(sector_size, &|event| match event {
            ParamEvent::WaitingForLock {
                circuit,
                index,
                total,
            } => {
                *activity.borrow_mut() = Some(Activity::spinner(format!(
                    "[{index}/{total}] {circuit}: waiting for another process generating the same files"
                )));
            }
            ParamEvent::Ready {
                circuit,
                index,
                total,
            } => {
                activity.borrow_mut().take();
                println!("[{index}/{total}] {circuit}: ready");
            }
            ParamEvent::Generating {
                circuit,
                index,
                total,
                reason,
            } => {
                activity.borrow_mut().take();
                println!("[{index}/{total}] {circuit}: generating ({reason})");
                *activity.borrow_mut() = Some(Activity::spinner(format!(
                    "[{index}/{total}] generating {circuit} parameters"
                )));
            }
            ParamEvent::Generated {
                circuit,
                index,
                total,
                bytes,
                elapsed,
            } => {
                activity.borrow_mut().take();
                println!(
                    "[{index}/{total}] {circuit}: generated {} in {}",
                    HumanBytes(bytes),
                    HumanDuration(elapsed)
                );
            }
        })
        .with_context(|| format!("prepare {sector_size} parameters"))?;
    activity.borrow_mut().take();
    println!(
        "{sector_size} parameters ready ({} generated, {} already present)",
        report.generated.len(),
        report.already_ready.len()
    );
    Ok(())
}
