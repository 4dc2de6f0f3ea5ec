//! A bare bitswap peer for the retrieval tests, built from the protocol's messages only.

use std::time::Duration;

use nelumbo_markets_api::bitswap;
use nelumbo_markets_api::p2p::build_swarm;

/// A bare bitswap peer built from the protocol's messages: wants go out on streams it opens,
/// and the provider's answers come in on streams the provider opens, gathered in order (or,
/// with `read_answers` false, accepted and never read: a peer that does not read).
pub struct RawPeer {
    control: libp2p_stream::Control,
    provider: libp2p::PeerId,
    /// The version its wants go out in (1.2.0 unless [`RawPeer::speaking`] says otherwise).
    protocol: libp2p::StreamProtocol,
    answers: tokio::sync::mpsc::Receiver<bitswap::Message>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the provider said of a want.
#[derive(Debug, Clone, PartialEq)]
pub enum Said {
    Block(Vec<u8>),
    Have,
    DontHave,
}

impl RawPeer {
    pub async fn new(
        provider: libp2p::PeerId,
        addr: libp2p::Multiaddr,
        read_answers: bool,
    ) -> Self {
        let mut swarm = build_swarm(
            libp2p::identity::Keypair::generate_ed25519(),
            "test",
            nelumbo_markets_api::p2p::Serve::BITSWAP_CLIENT,
            nelumbo_markets_api::p2p::Limits::none(),
        )
        .expect("swarm");
        swarm.add_peer_address(provider, addr);
        let control = swarm.behaviour().stream.new_control();
        let mut incoming = swarm
            .behaviour_mut()
            .bitswap
            .take()
            .expect("bitswap streams");
        let (sender, answers) = tokio::sync::mpsc::channel(1024);
        let driver = tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                swarm.select_next_some().await;
            }
        });
        let reader = tokio::spawn(async move {
            use futures::StreamExt;
            let mut held = Vec::new();
            while let Some(nelumbo_markets_api::inbound::Inbound { mut stream, .. }) =
                incoming.next().await
            {
                if !read_answers {
                    held.push(stream);
                    continue;
                }
                let sender = sender.clone();
                tokio::spawn(async move {
                    while let Ok(Some(message)) =
                        bitswap::read_message(&mut stream, bitswap::MAX_MESSAGE_BYTES).await
                    {
                        let _ = sender.send(message).await;
                    }
                });
            }
        });
        Self {
            control,
            provider,
            protocol: bitswap::PROTOCOL_1_2_0,
            answers,
            tasks: vec![driver, reader],
        }
    }

    /// The same peer, sending its wants in an older bitswap version.
    pub fn speaking(mut self, protocol: libp2p::StreamProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    pub async fn stream(&mut self) -> libp2p::Stream {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.control
                .open_stream(self.provider, self.protocol.clone()),
        )
        .await
        .expect("a stream in time")
        .expect("the provider speaks this bitswap version")
    }

    /// Sends one message of wants on a stream of its own.
    pub async fn want(&mut self, entries: Vec<bitswap::Entry>) {
        self.want_in_messages(std::iter::once(entries)).await;
    }

    /// Sends messages of wants, one after another on one stream of its own.
    pub async fn want_in_messages(&mut self, messages: impl Iterator<Item = Vec<bitswap::Entry>>) {
        use futures::AsyncWriteExt;
        let mut stream = self.stream().await;
        for entries in messages {
            let message = bitswap::Message {
                wantlist: Some(bitswap::Wantlist {
                    entries,
                    full: false,
                }),
                ..Default::default()
            };
            bitswap::write_message(&mut stream, &message)
                .await
                .expect("write");
        }
        let _ = stream.close().await;
    }

    /// What the provider says of each of `cids`, gathered for up to `within`.
    pub async fn answers(
        &mut self,
        cids: &[&str],
        within: Duration,
    ) -> std::collections::HashMap<String, Said> {
        let deadline = tokio::time::Instant::now() + within;
        let mut said = std::collections::HashMap::new();
        while said.len() < cids.len() {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, self.answers.recv()).await
            else {
                break;
            };
            for block in message.payload {
                let (version, codec, code, _) =
                    bitswap::parse_prefix(&block.prefix).expect("a valid prefix");
                assert_eq!((version, code), (1, 0x12), "a CIDv1 sha2-256 prefix");
                let cid = nelumbo_car::cid_v1_sha256(codec, &block.data).to_string();
                said.insert(cid, Said::Block(block.data.to_vec()));
            }
            // 1.0.0's bare blocks, named by their CIDv0.
            for data in message.blocks {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
                let multihash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).expect("mh");
                let cid = cid::Cid::new_v0(multihash).expect("a CIDv0").to_string();
                said.insert(cid, Said::Block(data.to_vec()));
            }
            for presence in message.block_presences {
                let cid = cid::Cid::try_from(presence.cid.as_slice())
                    .expect("a CID")
                    .to_string();
                let kind = if presence.r#type == bitswap::PresenceType::Have as i32 {
                    Said::Have
                } else {
                    Said::DontHave
                };
                said.insert(cid, kind);
            }
        }
        said
    }
}

pub fn want(cid: &str, kind: bitswap::WantType, send_dont_have: bool) -> bitswap::Entry {
    bitswap::Entry {
        block: cid.parse::<cid::Cid>().expect("cid").to_bytes(),
        priority: 1,
        cancel: false,
        want_type: kind as i32,
        send_dont_have,
    }
}
