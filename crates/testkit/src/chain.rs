//! A devnet for tests: the real `nelumbo-chain` binary in a temporary repo, reached only
//! through its JSON-RPC API, and a miner operated from the test with its own keys.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cid::Cid;
use cid::multihash::Multihash;
use fil_actor_miner_state::v18::{
    CompactCommD, PieceActivationManifest, PreCommitSectorBatchParams2, ProveCommitSectors3Params,
    SectorActivationManifest, SectorPreCommitInfo,
};
use fvm_ipld_encoding::RawBytes;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use fvm_shared::sector::RegisteredSealProof;
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{
    DeadlineInfo, Message, MsgLookup, Signature, SignedMessage, TipSetKey,
};
use nelumbo_chain_api::{Addr, Base64, CidJson};
use nelumbo_commp::{PaddedPieceSize, SectorPiece, SectorSize};
use nelumbo_keys::{KeyInfo, KeyKind};
use nelumbo_proofs::{Replica, SealedCommitments};
use nelumbo_rpc::{ApiInfo, ClientError, RpcClient};
use nelumbo_types::{ActorId, SectorNumber};
use serde::Serialize;

/// The `nelumbo-chain` binary.
/// The devnet's default policy (as `nelumbo-chain genesis` writes it) with `overrides` merged
/// in, for `genesis --policy FILE`: tests shorten the proving period and epochs with it.
pub fn devnet_policy(overrides: serde_json::Value) -> serde_json::Value {
    let mut policy = serde_json::json!({
        "epoch_duration_ms": 2000,
        "wpost_period_deadlines": 48,
        "wpost_challenge_window": 10,
        "wpost_challenge_lookback": 3,
        "fault_declaration_cutoff": 5,
        "pre_commit_challenge_delay": 10,
        "max_pre_commit_randomness_lookback": 600,
        "max_prove_commit_duration": 3000,
        "min_sector_expiration": 1000,
        "max_sector_expiration": 1000000,
        "min_deal_duration": 100,
        "max_deal_duration": 1000000,
        "block_reward": "10",
        "election_rate_permille": 50,
        "block_acceptance_epochs": 20,
        "base_fee_atto": 1000,
        "pre_commit_deposit": "0.01",
        "initial_pledge": "0.1",
        "fault_fee": "0.01",
        "termination_fee": "0.05",
        "window_post_partition_sectors": 2,
        "state_retention_epochs": 3000,
    });
    if let (Some(policy), Some(overrides)) = (policy.as_object_mut(), overrides.as_object()) {
        for (key, value) in overrides {
            assert!(policy.contains_key(key), "no policy field {key}");
            policy.insert(key.clone(), value.clone());
        }
    }
    policy
}

pub fn chain_binary() -> PathBuf {
    crate::binary("nelumbo-chain")
}

#[derive(Debug)]
pub struct Devnet {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    child: Option<Child>,
    pub client: RpcClient,
    pub url: String,
    /// The repo's admin token.
    pub token: String,
    /// Where the daemon listens: a free port at first, then the same port on every restart,
    /// so that clients configured with it (a hub, say) find the chain again.
    listen: String,
}

impl Devnet {
    /// A devnet whose genesis uses `devnet_policy(overrides)` (and `args`, such as the proof
    /// mode and sector sizes).
    pub async fn start_with_policy(args: &[&str], overrides: serde_json::Value) -> Self {
        let file = tempfile::NamedTempFile::new().expect("policy file");
        std::fs::write(file.path(), devnet_policy(overrides).to_string()).expect("write policy");
        let mut all = args.to_vec();
        all.extend(["--policy", file.path().to_str().expect("utf-8")]);
        Self::start(&all).await
    }

    /// Creates a genesis with `args` and starts the chain.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1", args).await
    }

    /// [`Devnet::start`] with the chain's API on address `ip` (a free port) instead of loopback,
    /// for hosts in other network namespaces to reach.
    pub async fn start_on(ip: &str, args: &[&str]) -> Self {
        nelumbo_chain_api::json::use_testnet_addresses();
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("chain");
        let output = Command::new(chain_binary())
            .args(["--repo", repo.to_str().expect("utf-8"), "genesis"])
            .args(args)
            .output()
            .expect("run genesis");
        assert!(
            output.status.success(),
            "genesis failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut devnet = Self {
            dir,
            repo,
            child: None,
            client: RpcClient::new("http://127.0.0.1:1/rpc/v1", None),
            url: String::new(),
            token: String::new(),
            listen: format!("{ip}:0"),
        };
        devnet.run().await;
        devnet
    }

    /// Starts the daemon on the repo and waits until it answers.
    pub async fn run(&mut self) {
        let _ = std::fs::remove_file(self.repo.join("api"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("chain.log"))
            .expect("log file");
        let child = Command::new(chain_binary())
            .args([
                "--repo",
                self.repo.to_str().expect("utf-8"),
                "run",
                "--listen",
                &self.listen,
            ])
            .env(
                "RUST_LOG",
                "info,storage_proofs_core=warn,filecoin_proofs=warn",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nelumbo-chain");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "the chain did not start:\n{}",
                self.log()
            );
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the chain exited with {status}:\n{}", self.log());
            }
            if let (Ok(api), Ok(token)) = (
                std::fs::read_to_string(self.repo.join("api")),
                std::fs::read_to_string(self.repo.join("token")),
            ) {
                let mut info = ApiInfo::parse(api.trim()).expect("api file");
                info.token = Some(token.trim().to_string());
                let client = RpcClient::from_api_info(&info);
                if client.call::<Version>(()).await.is_ok() {
                    self.url = client.url().to_string();
                    self.token = token.trim().to_string();
                    if let Some(port) = api.trim().split('/').nth(4) {
                        let ip = self
                            .listen
                            .rsplit_once(':')
                            .map_or("127.0.0.1", |(ip, _)| ip);
                        self.listen = format!("{ip}:{port}");
                    }
                    self.client = client;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon with SIGTERM (or SIGKILL when `kill`), waiting for it to exit.
    pub fn stop(&mut self, kill: bool) {
        if let Some(child) = self.child.take() {
            crate::stop_process(child, kill);
        }
    }

    /// Sends one raw JSON-RPC request (a Lotus client's view) with the admin token and returns
    /// the response object.
    pub async fn raw(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        crate::api::raw_response(&self.url, &self.token, method, params).await
    }

    /// The result of a raw call; panics on a JSON-RPC error.
    pub async fn raw_ok(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        crate::api::raw_call(&self.url, &self.token, method, params).await
    }

    /// The genesis the chain runs.
    /// The genesis file the chain runs, as JSON.
    pub fn genesis(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.repo.join("genesis.json")).expect("genesis");
        serde_json::from_str(&text).expect("genesis JSON")
    }

    /// The verified registry's root key, which the chain's wallet holds.
    pub fn verified_registry_root(&self) -> Address {
        let root = self.genesis()["verified_registry_root"]
            .as_str()
            .expect("verified_registry_root")
            .to_string();
        nelumbo_chain_api::json::parse_address(&root).expect("root address")
    }

    /// Epochs between a pre-commit and its interactive seed.
    pub async fn pre_commit_delay(&self) -> i64 {
        self.genesis()["policy"]["pre_commit_challenge_delay"]
            .as_i64()
            .expect("pre_commit_challenge_delay")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chain.log")).unwrap_or_default()
    }

    pub async fn head(&self) -> i64 {
        self.client
            .call::<ChainHead>(())
            .await
            .expect("head")
            .height
    }

    pub async fn wait_height(&self, height: i64) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.head().await < height {
            assert!(
                Instant::now() < deadline,
                "the chain stalled before height {height}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends FIL from the faucet (the chain wallet's default address).
    pub async fn fund(&self, to: Address, fil: u64) {
        let faucet = self
            .client
            .call::<WalletDefaultAddress>(())
            .await
            .expect("faucet");
        let message = Message(plain_message(
            faucet.0,
            to,
            TokenAmount::from_whole(fil),
            0,
            Vec::new(),
        ));
        let signed = self
            .client
            .call::<MpoolPushMessage>((message, None))
            .await
            .expect("fund");
        let lookup = self.wait(signed.cid().expect("cid")).await;
        assert_eq!(lookup.receipt.exit_code, 0, "funding failed");
    }

    pub async fn wait(&self, cid: Cid) -> MsgLookup {
        self.client
            .call::<StateWaitMsg>((CidJson(cid), 0, -1, true))
            .await
            .expect("wait for message")
    }

    /// Builds, signs and pushes a message from `key`; returns its CID.
    pub async fn push(
        &self,
        key: &KeyInfo,
        to: Address,
        method: u64,
        params: Vec<u8>,
        value: TokenAmount,
    ) -> Result<Cid, ClientError> {
        let from = key.address().expect("address");
        let message = Message(plain_message(from, to, value, method, params));
        let mut message = self
            .client
            .call::<GasEstimateMessageGas>((message, None, TipSetKey::head()))
            .await?;
        message.0.sequence = self.client.call::<MpoolGetNonce>((Addr(from),)).await?;
        let signed = sign(key, message);
        Ok(self.client.call::<MpoolPush>((signed,)).await?.0)
    }

    /// Pushes and waits; panics if the message fails.
    pub async fn execute(
        &self,
        key: &KeyInfo,
        to: Address,
        method: u64,
        params: Vec<u8>,
        value: TokenAmount,
    ) -> MsgLookup {
        let cid = self
            .push(key, to, method, params, value)
            .await
            .expect("push");
        let lookup = self.wait(cid).await;
        assert_eq!(
            lookup.receipt.exit_code,
            0,
            "message failed:\n{}",
            self.log()
        );
        lookup
    }

    /// The CIDs of every message to `to` calling `method`, over the whole chain.
    pub async fn messages_to(&self, to: Address, method: u64) -> Vec<Cid> {
        self.messages_with_params(to, method)
            .await
            .into_iter()
            .map(|(cid, _)| cid)
            .collect()
    }

    /// Every message to `to` calling `method` over the whole chain, with its parameters.
    pub async fn messages_with_params(&self, to: Address, method: u64) -> Vec<(Cid, Vec<u8>)> {
        let head = self.head().await;
        let mut found = Vec::new();
        for height in 1..=head {
            let tipset = self
                .client
                .call::<ChainGetTipSetByHeight>((height, TipSetKey::head()))
                .await
                .expect("tipset");
            if tipset.height != height {
                continue; // a null round
            }
            for block in &tipset.cids {
                let messages = self
                    .client
                    .call::<ChainGetBlockMessages>((CidJson(*block),))
                    .await
                    .expect("block messages");
                let all = messages
                    .bls_messages
                    .iter()
                    .cloned()
                    .chain(messages.secpk_messages.iter().map(|s| s.message.clone()));
                for (message, cid) in all.zip(messages.cids.iter()) {
                    if message.0.to == to && message.0.method_num == method {
                        found.push((*cid, message.0.params.to_vec()));
                    }
                }
            }
        }
        found
    }

    /// How many times each deal proposal (by its signed proposal CID, as markets and Boost
    /// name it) was sent in a `PublishStorageDeals` message, over the whole chain.
    pub async fn published_proposals(&self) -> std::collections::BTreeMap<Cid, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for (cid, params) in self
            .messages_with_params(Address::new_id(5), PUBLISH_STORAGE_DEALS)
            .await
        {
            let params: fil_actor_market_state::v18::PublishStorageDealsParams =
                fvm_ipld_encoding::from_slice(&params)
                    .unwrap_or_else(|e| panic!("publish message {cid}: {e}"));
            for deal in &params.deals {
                let proposal = nelumbo_markets_api::wire::signed_proposal_cid(deal)
                    .expect("encode a proposal");
                *counts.entry(proposal).or_insert(0) += 1;
            }
        }
        counts
    }

    /// How many pre-commits and prove-commits named each sector of `miner`, over the whole
    /// chain (batched messages counted per sector).
    pub async fn sector_commits(&self, miner: Address) -> (SectorCounts, SectorCounts) {
        use fil_actor_miner_state::v18::{PreCommitSectorBatchParams2, ProveCommitSectors3Params};
        let pre = self
            .count_sectors(
                miner,
                PRE_COMMIT_SECTOR_BATCH2,
                |p: PreCommitSectorBatchParams2| {
                    p.sectors.iter().map(|s| s.sector_number).collect()
                },
            )
            .await;
        let prove = self
            .count_sectors(
                miner,
                PROVE_COMMIT_SECTORS3,
                |p: ProveCommitSectors3Params| {
                    p.sector_activations
                        .iter()
                        .map(|s| s.sector_number)
                        .collect()
                },
            )
            .await;
        (pre, prove)
    }

    /// How many messages to `miner` calling `method` named each sector, as `sectors` reads
    /// them from the decoded parameters.
    async fn count_sectors<P: serde::de::DeserializeOwned>(
        &self,
        miner: Address,
        method: u64,
        sectors: impl Fn(P) -> Vec<u64>,
    ) -> SectorCounts {
        let mut counts = SectorCounts::new();
        for (cid, params) in self.messages_with_params(miner, method).await {
            let params: P = fvm_ipld_encoding::from_slice(&params)
                .unwrap_or_else(|e| panic!("message {cid} (method {method}): {e}"));
            for sector in sectors(params) {
                *counts.entry(sector).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The miner's deadline `index`: its next occurrence not yet closed.
    pub async fn next_deadline(&self, miner: Address, index: u64) -> DeadlineInfo {
        let current = self
            .client
            .call::<StateMinerProvingDeadline>((Addr(miner), TipSetKey::head()))
            .await
            .expect("deadline");
        let n = current.wpost_period_deadlines;
        let ahead = (index + n - current.index) % n;
        let open = current.open + ahead as i64 * current.wpost_challenge_window;
        DeadlineInfo {
            index,
            open,
            close: open + current.wpost_challenge_window,
            challenge: open - current.wpost_challenge_lookback,
            fault_cutoff: open - current.fault_declaration_cutoff,
            ..current
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// Market actor method 4.
pub const PUBLISH_STORAGE_DEALS: u64 = 4;

/// Per sector number, how many messages named it.
pub type SectorCounts = std::collections::BTreeMap<u64, usize>;

/// An fvm message with nonce and gas left at zero.
pub fn plain_message(
    from: Address,
    to: Address,
    value: TokenAmount,
    method: u64,
    params: Vec<u8>,
) -> fvm_shared::message::Message {
    Message::unpriced(from, to, value, method, params).0
}

pub fn sign(key: &KeyInfo, message: Message) -> SignedMessage {
    let signature = key.sign(&message.cid().to_bytes()).expect("sign");
    SignedMessage {
        message,
        signature: Signature::from_fvm(&signature),
    }
}

pub fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(value).expect("cbor")
}

/// A miner operated by the test.
#[derive(Debug)]
pub struct TestMiner {
    pub owner: KeyInfo,
    pub worker: KeyInfo,
    pub address: Address,
    pub id: u64,
}

pub const POWER: u64 = 4;
pub const MARKET: u64 = 5;

/// Creates a miner with a BLS worker and funds it.
pub async fn create_miner(devnet: &Devnet, window_post_proof: i64) -> TestMiner {
    let owner = KeyInfo::generate(KeyKind::Secp256k1);
    let worker = KeyInfo::generate(KeyKind::Bls);
    devnet.fund(owner.address().expect("owner"), 1000).await;
    devnet.fund(worker.address().expect("worker"), 1000).await;
    let params = fil_actor_power_state::v18::CreateMinerParams {
        owner: owner.address().expect("owner"),
        worker: worker.address().expect("worker"),
        window_post_proof_type: fvm_shared::sector::RegisteredPoStProof::from(window_post_proof),
        peer: b"12D3KooWtest".to_vec(),
        multiaddrs: vec![fvm_ipld_encoding::BytesDe(vec![
            4, 127, 0, 0, 1, 6, 0x1f, 0x90,
        ])],
    };
    let lookup = devnet
        .execute(
            &owner,
            Address::new_id(POWER),
            2,
            cbor(&params),
            TokenAmount::from_whole(100),
        )
        .await;
    let ret: fil_actor_power_state::v18::CreateMinerReturn =
        fvm_ipld_encoding::from_slice(&lookup.receipt.r#return).expect("CreateMinerReturn");
    TestMiner {
        owner,
        worker,
        id: ret.id_address.id().expect("id"),
        address: ret.id_address,
    }
}

/// The entropy the actors mix into a miner's randomness: CBOR of its address.
pub fn entropy(address: &Address) -> Vec<u8> {
    cbor(address)
}

/// Chain or beacon randomness for `tag` at `epoch`.
pub async fn randomness(
    devnet: &Devnet,
    beacon: bool,
    tag: i64,
    epoch: i64,
    entropy: Vec<u8>,
) -> [u8; 32] {
    let bytes = if beacon {
        devnet
            .client
            .call::<StateGetRandomnessFromBeacon>((tag, epoch, Base64(entropy), TipSetKey::head()))
            .await
    } else {
        devnet
            .client
            .call::<StateGetRandomnessFromTickets>((tag, epoch, Base64(entropy), TipSetKey::head()))
            .await
    };
    bytes.expect("randomness").0.try_into().expect("32 bytes")
}

/// The CID of a sealed sector commitment (CommR).
pub fn sealed_cid(comm_r: &[u8; 32]) -> Cid {
    Cid::new_v1(0xf102, Multihash::wrap(0xb401, comm_r).expect("multihash"))
}

/// DomainSeparationTags the actors use.
pub const SEAL_RANDOMNESS: i64 = 5;
pub const INTERACTIVE_SEED: i64 = 6;
pub const WINDOW_POST_SEED: i64 = 4;
pub const POST_CHAIN_COMMIT: i64 = 9;

/// Miner method numbers.
pub const PRE_COMMIT_SECTOR_BATCH2: u64 = 28;
pub const PROVE_COMMIT_SECTORS3: u64 = 34;
pub const SUBMIT_WINDOWED_POST: u64 = 5;

/// A sector pre-committed by [`insecure_pre_commit`], for a chain in insecure testing mode.
#[derive(Debug, Clone)]
pub struct PreCommitted {
    pub number: u64,
    pub comm_r: [u8; 32],
    pub ticket_epoch: i64,
    pub pre_commit_epoch: i64,
    pub pieces: Vec<PieceActivationManifest>,
}

/// The pre-commit parameters of sector `number` holding `pieces`, sealed (in insecure mode, by
/// assertion) with `comm_r` and the ticket at `ticket_epoch`.
pub fn pre_commit_params(
    number: u64,
    comm_r: &[u8; 32],
    ticket_epoch: i64,
    expiration: i64,
    pieces: &[PieceActivationManifest],
) -> PreCommitSectorBatchParams2 {
    let unsealed = if pieces.is_empty() {
        None
    } else {
        let sector_pieces: Vec<SectorPiece> = pieces
            .iter()
            .map(|p| SectorPiece {
                commitment: nelumbo_commp::parse_piece_cid(&p.cid)
                    .expect("piece CID")
                    .commitment,
                size: PaddedPieceSize::new(p.size.0).expect("piece size"),
            })
            .collect();
        let comm_d = nelumbo_commp::commd(SectorSize::KIB_2, &sector_pieces).expect("CommD");
        Some(nelumbo_commp::piece_cid_v1(&comm_d))
    };
    PreCommitSectorBatchParams2 {
        sectors: vec![SectorPreCommitInfo {
            seal_proof: RegisteredSealProof::from(SectorSize::KIB_2.seal_proof_number()),
            sector_number: number,
            sealed_cid: sealed_cid(comm_r),
            seal_rand_epoch: ticket_epoch,
            deal_ids: vec![],
            expiration,
            unsealed_cid: CompactCommD(unsealed),
        }],
    }
}

/// Pre-commits a 2 KiB sector holding `pieces` with a random CommR and waits for it to land.
pub async fn insecure_pre_commit(
    devnet: &Devnet,
    miner: &TestMiner,
    number: u64,
    pieces: Vec<PieceActivationManifest>,
) -> PreCommitted {
    let comm_r = random_commitment();
    let ticket_epoch = devnet.head().await - 1;
    let params = pre_commit_params(
        number,
        &comm_r,
        ticket_epoch,
        devnet.head().await + 5000,
        &pieces,
    );
    let lookup = devnet
        .execute(
            &miner.worker,
            miner.address,
            PRE_COMMIT_SECTOR_BATCH2,
            cbor(&params),
            TokenAmount::from_atto(0),
        )
        .await;
    PreCommitted {
        number,
        comm_r,
        ticket_epoch,
        pre_commit_epoch: lookup.height - 1,
        pieces,
    }
}

/// A 32-byte commitment that is a valid field element.
pub fn random_commitment() -> [u8; 32] {
    let mut bytes: [u8; 32] = rand::random();
    bytes[31] &= 0x3f;
    bytes
}

/// The prove-commit parameters of a pre-committed sector with `proof`.
pub fn prove_commit_params(sector: &PreCommitted, proof: Vec<u8>) -> ProveCommitSectors3Params {
    ProveCommitSectors3Params {
        sector_activations: vec![SectorActivationManifest {
            sector_number: sector.number,
            pieces: sector.pieces.clone(),
        }],
        sector_proofs: vec![RawBytes::new(proof)],
        aggregate_proof: RawBytes::default(),
        aggregate_proof_type: None,
        require_activation_success: true,
        require_notification_success: true,
    }
}

/// The insecure testing seal proof of a pre-committed sector, once its seed exists.
pub async fn insecure_seal_proof(
    devnet: &Devnet,
    miner: &TestMiner,
    sector: &PreCommitted,
    seed_epoch: i64,
) -> Vec<u8> {
    let ticket = randomness(
        devnet,
        false,
        SEAL_RANDOMNESS,
        sector.ticket_epoch,
        entropy(&miner.address),
    )
    .await;
    let seed = randomness(
        devnet,
        true,
        INTERACTIVE_SEED,
        seed_epoch,
        entropy(&miner.address),
    )
    .await;
    let comm_d = if sector.pieces.is_empty() {
        nelumbo_commp::zero_piece_commitment(SectorSize::KIB_2.padded())
    } else {
        let params = pre_commit_params(0, &[0; 32], 0, 0, &sector.pieces);
        let cid = params.sectors[0].unsealed_cid.0.expect("CommD");
        nelumbo_commp::parse_piece_cid(&cid)
            .expect("CommD")
            .commitment
    };
    let replica = Replica {
        sector_size: SectorSize::KIB_2,
        miner: ActorId(miner.id),
        number: SectorNumber(sector.number),
        ticket: nelumbo_types::Randomness(ticket),
    };
    let sealed = SealedCommitments {
        comm_r: sector.comm_r,
        comm_d,
    };
    nelumbo_proofs::insecure_seal_proof(&replica, &sealed, nelumbo_types::Randomness(seed))
}

/// Pre-commits and prove-commits a 2 KiB sector on an insecure-mode chain.
pub async fn insecure_commit(
    devnet: &Devnet,
    miner: &TestMiner,
    number: u64,
    pieces: Vec<PieceActivationManifest>,
) -> (PreCommitted, MsgLookup) {
    let sector = insecure_pre_commit(devnet, miner, number, pieces).await;
    let seed_epoch = sector.pre_commit_epoch + devnet.pre_commit_delay().await;
    devnet.wait_height(seed_epoch + 1).await;
    let proof = insecure_seal_proof(devnet, miner, &sector, seed_epoch).await;
    let lookup = devnet
        .execute(
            &miner.worker,
            miner.address,
            PROVE_COMMIT_SECTORS3,
            cbor(&prove_commit_params(&sector, proof)),
            TokenAmount::from_atto(0),
        )
        .await;
    (sector, lookup)
}

/// Finds the deadline and partition a sector was assigned to.
pub async fn location(devnet: &Devnet, miner: &TestMiner, sector: u64) -> (u64, u64) {
    for deadline in 0..48 {
        let partitions = devnet
            .client
            .call::<StateMinerPartitions>((Addr(miner.address), deadline, TipSetKey::head()))
            .await
            .expect("partitions");
        for (index, p) in partitions.iter().enumerate() {
            if p.all_sectors.get(sector) {
                return (deadline, index as u64);
            }
        }
    }
    panic!("sector {sector} is in no partition");
}
