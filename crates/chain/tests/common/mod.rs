//! A devnet for tests: the real `nelumbo-chain` binary in a temporary repo, reached only
//! through its JSON-RPC API, and a miner operated from the test with its own keys.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cid::Cid;
use fvm_ipld_encoding::RawBytes;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{
    DeadlineInfo, Message, MsgLookup, Signature, SignedMessage, TipSetKey,
};
use nelumbo_chain_api::{Addr, CidJson};
use nelumbo_keys::{KeyInfo, KeyKind};
use nelumbo_rpc::{ApiInfo, ClientError, RpcClient};
use serde::Serialize;

pub const CHAIN: &str = env!("CARGO_BIN_EXE_nelumbo-chain");

pub struct Devnet {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    child: Option<Child>,
    pub client: RpcClient,
    pub url: String,
}

impl Devnet {
    /// Creates a genesis with `args` and starts the chain.
    pub async fn start(args: &[&str]) -> Self {
        nelumbo_chain_api::json::use_testnet_addresses();
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("chain");
        let output = Command::new(CHAIN)
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
        let child = Command::new(CHAIN)
            .args([
                "--repo",
                self.repo.to_str().expect("utf-8"),
                "run",
                "--listen",
                "127.0.0.1:0",
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
                    self.client = client;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon with SIGTERM (or SIGKILL when `kill`), waiting for it to exit.
    pub fn stop(&mut self, kill: bool) {
        if let Some(mut child) = self.child.take() {
            let signal = if kill { "-KILL" } else { "-TERM" };
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
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

pub fn plain_message(
    from: Address,
    to: Address,
    value: TokenAmount,
    method: u64,
    params: Vec<u8>,
) -> fvm_shared::message::Message {
    fvm_shared::message::Message {
        version: 0,
        from,
        to,
        sequence: 0,
        value,
        method_num: method,
        params: RawBytes::new(params),
        gas_limit: 0,
        gas_fee_cap: TokenAmount::from_atto(0),
        gas_premium: TokenAmount::from_atto(0),
    }
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
