//! The WebSocket tracker over real sockets on 127.0.0.1: offers relayed, answers forwarded,
//! hostile frames answered with a failure or a closed connection while honest clients carry
//! on.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webtorrent::codec::{Announce, Answer, ClientMessage, Offer, ServerMessage, binary_string};
use webtorrent::server::Config;
use webtorrent::ws_server::WsServer;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
const DEADLINE: Duration = Duration::from_secs(10);

async fn start() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let server = WsServer::bind("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (addr, tokio::spawn(server.run()))
}

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::connect_async(format!("ws://{addr}/announce")),
    )
    .await
    .unwrap()
    .unwrap();
    ws
}

async fn send(ws: &mut Ws, text: String) {
    ws.send(Message::text(text)).await.unwrap();
}

async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("no message before the deadline")
            .expect("connection closed")
            .unwrap();
        if let Message::Text(t) = msg {
            return ServerMessage::decode(t.as_str()).unwrap();
        }
    }
}

fn announce(peer: u8, offers: &[u8]) -> String {
    ClientMessage::Announce(Announce {
        info_hash: [0xe1; 20],
        peer_id: [peer; 20],
        numwant: Some(offers.len() as u32),
        uploaded: 0,
        downloaded: 0,
        left: Some(if peer == 1 { 0 } else { 100 }),
        event: None,
        offers: offers
            .iter()
            .map(|&o| Offer {
                offer_id: [o; 20],
                sdp: format!("v=0\r\no={o}\r\n"),
            })
            .collect(),
    })
    .encode()
}

#[tokio::test]
async fn relays_an_offer_and_its_answer() {
    let (addr, server) = start().await;
    let mut leecher = connect(addr).await;
    send(&mut leecher, announce(2, &[])).await;
    assert!(matches!(
        recv(&mut leecher).await,
        ServerMessage::AnnounceReply {
            incomplete: 1,
            complete: 0,
            interval: Some(120),
            ..
        }
    ));

    let mut seeder = connect(addr).await;
    send(&mut seeder, announce(1, &[0x80, 0x81])).await;
    assert!(matches!(
        recv(&mut seeder).await,
        ServerMessage::AnnounceReply {
            complete: 1,
            incomplete: 1,
            ..
        }
    ));
    // One peer in the swarm: one of the two offers reaches it.
    let ServerMessage::Offer(offer) = recv(&mut leecher).await else {
        panic!("expected an offer")
    };
    assert_eq!(offer.peer_id, [1; 20]);
    assert!(offer.sdp.starts_with("v=0\r\n"));
    let offer_id = offer.offer_id;

    // Hostile frames on a third connection: failures, not a crash.
    let mut hostile = connect(addr).await;
    send(&mut hostile, "not json".into()).await;
    assert!(matches!(
        recv(&mut hostile).await,
        ServerMessage::Failure { .. }
    ));
    // An id with a character above U+00FF.
    let wide = announce(b'c', &[]).replace(&binary_string(&[b'c'; 20]), &"\u{100}".repeat(20));
    assert!(wide.contains('\u{100}'));
    send(&mut hostile, wide).await;
    assert!(matches!(
        recv(&mut hostile).await,
        ServerMessage::Failure { .. }
    ));
    // An unsolicited answer is not forwarded (the seeder sees nothing from it below).
    send(
        &mut hostile,
        ClientMessage::Answer(Answer {
            info_hash: [0xe1; 20],
            peer_id: [3; 20],
            to_peer_id: [1; 20],
            offer_id,
            sdp: "forged".into(),
        })
        .encode(),
    )
    .await;
    // A frame over the limit closes that connection.
    let big = "x".repeat(webtorrent::codec::MAX_MESSAGE + 10);
    let _ = hostile.send(Message::text(big)).await;
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match hostile.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an oversized frame did not close the connection"
    );

    // The leecher answers; the seeder gets exactly that answer.
    send(
        &mut leecher,
        ClientMessage::Answer(Answer {
            info_hash: [0xe1; 20],
            peer_id: [2; 20],
            to_peer_id: [1; 20],
            offer_id,
            sdp: "v=0\r\nanswer\r\n".into(),
        })
        .encode(),
    )
    .await;
    match recv(&mut seeder).await {
        ServerMessage::Answer(r) => {
            assert_eq!(r.peer_id, [2; 20]);
            assert_eq!(r.offer_id, offer_id);
            assert_eq!(r.sdp, "v=0\r\nanswer\r\n");
        }
        other => panic!("expected the answer, got {other:?}"),
    }
    server.abort();
}
