//! Piece upload as a spoke does it: `PUT /pieces/{pieceCid}?size=` with a spoke token. The hub
//! recomputes the piece commitment while receiving; data that does not match its piece CID is
//! refused with both commitments named and nothing is kept. A good piece is kept once. What
//! no deal claims is bounded in bytes and deleted after its time. What a crash leaves half
//! written is removed at the next start.

use nelumbo_testkit::hub::{TestHub, insecure_hub};

fn pieces_dir(hub: &TestHub) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(hub.repo.join("storage/pieces"))
        .expect("pieces dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_pieces_are_verified_and_bad_ones_leave_nothing() {
    let (_devnet, mut hub) = insecure_hub(500, &[]).await;
    // Room for two 1000-byte pieces no deal claims, kept for 4 seconds.
    hub.edit_config(
        "max_unclaimed_piece_bytes = 68719476736",
        "max_unclaimed_piece_bytes = 2500",
    );
    hub.edit_config(
        "unclaimed_piece_ttl_secs = 21600",
        "unclaimed_piece_ttl_secs = 4",
    );
    hub.run(&[]).await;
    let write = hub.token("spoke");
    let http = reqwest::Client::new();

    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = nelumbo_commp::commp(&data).expect("commp");
    let v1 = digest.cid_v1().to_string();
    // The deal's piece is larger than the payload needs: the commitment is zero-padded.
    let padded = nelumbo_commp::pad_commitment(
        &digest.commitment,
        digest.piece_size,
        nelumbo_commp::PaddedPieceSize::new(2048).expect("size"),
    )
    .expect("pad");
    let padded_cid = nelumbo_commp::piece_cid_v1(&padded).to_string();
    let base = hub.url.clone();
    let url = move |cid: &str, size: u64| format!("{base}/pieces/{cid}?size={size}");

    // No token, a read token.
    let response = http
        .put(url(&v1, 1024))
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 401);
    let response = http
        .put(url(&v1, 1024))
        .bearer_auth(hub.token("read"))
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("need 'admin'")
    );
    // An operator's write token is not a spoke's.
    let response = http
        .put(url(&v1, 1024))
        .bearer_auth(hub.token("write"))
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 403);
    // No size for a v1 CID: refused before a byte is read.
    let response = http
        .put(format!("{}/pieces/{v1}", hub.url))
        .bearer_auth(&write)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("text").contains("?size="));

    // Data that does not match its CID: refused, named, nothing kept.
    let mut tampered = data.clone();
    tampered[500] ^= 1;
    let response = http
        .put(url(&padded_cid, 2048))
        .bearer_auth(&write)
        .body(tampered)
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    let message = response.text().await.expect("text");
    assert!(
        message.contains("piece commitment") && message.contains("nothing was kept"),
        "{message}"
    );
    assert!(
        pieces_dir(&hub).is_empty(),
        "left behind: {:?}",
        pieces_dir(&hub)
    );
    // Too long for the declared size.
    let response = http
        .put(url(&v1, 256))
        .bearer_auth(&write)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 413);
    assert!(pieces_dir(&hub).is_empty());

    // The right data, padded to 2 KiB: kept once.
    let response = http
        .put(url(&padded_cid, 2048))
        .bearer_auth(&write)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answer["PieceSize"], 2048);
    assert_eq!(answer["PayloadSize"], 1000);
    assert_eq!(pieces_dir(&hub), vec![padded_cid.clone()]);
    assert_eq!(
        std::fs::read(hub.repo.join("storage/pieces").join(&padded_cid)).expect("kept"),
        data
    );
    let again = http
        .put(url(&padded_cid, 2048))
        .bearer_auth(&write)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(again.status(), 200);
    assert_eq!(pieces_dir(&hub), vec![padded_cid.clone()]);

    // A crash in the middle of an upload or an unseal leaves temporary files: the next start
    // removes them (the piece itself is kept until its time, below).
    hub.stop(true);
    let dir = hub.repo.join("storage/pieces");
    std::fs::write(dir.join(".upload-0123456789abcdef"), b"half an upload").expect("write");
    std::fs::write(
        dir.join(format!("{padded_cid}.unsealing-42")),
        b"half an unseal",
    )
    .expect("write");
    hub.run(&[]).await;
    let left = pieces_dir(&hub);
    assert!(
        left.iter()
            .all(|n| !n.starts_with(".upload-") && !n.contains(".unsealing-")),
        "{left:?}"
    );
    let http = reqwest::Client::new();
    let base = hub.url.clone();
    let url = move |cid: &str, size: u64| format!("{base}/pieces/{cid}?size={size}");

    // A second unclaimed piece fits the bound; a third does not (507, nothing kept).
    let put = |seed: u8| {
        let data: Vec<u8> = (0..1000u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let cid = nelumbo_commp::commp(&data)
            .expect("commp")
            .cid_v1()
            .to_string();
        let request = http.put(url(&cid, 1024)).bearer_auth(&write).body(data);
        async move { (request.send().await.expect("put"), cid) }
    };
    let (response, second) = put(3).await;
    assert_eq!(response.status(), 201);
    let (response, third) = put(5).await;
    assert_eq!(response.status(), 507);
    let message = response.text().await.expect("text");
    assert!(message.contains("max_unclaimed_piece_bytes"), "{message}");
    assert!(!pieces_dir(&hub).contains(&third));

    // Unclaimed pieces are deleted after their time; then there is room again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pieces_dir(&hub)
        .iter()
        .any(|n| n == &padded_cid || n == &second)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "unclaimed pieces were kept past their time: {:?}",
            pieces_dir(&hub)
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (response, _) = put(5).await;
    assert_eq!(response.status(), 201);
}
