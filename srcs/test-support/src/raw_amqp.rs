//! A message no well-behaved client can send: AMQP 0-9-1 spoken by hand, to publish a message
//! whose `message-id` is not UTF-8. RabbitMQ accepts any bytes in a short string; lapin (our
//! client) refuses to parse them and drops the connection. The tests use it to show what billing
//! and its dlq tool do with such a message (another producer on the broker could send one).

use std::time::Duration;

use lapin::uri::AMQPUri;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const FRAME_END: u8 = 0xCE;

fn short_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("a short string"));
    out.extend_from_slice(bytes);
}

fn method(class: u16, method: u16, arguments: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + arguments.len());
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(arguments);
    payload
}

async fn send(stream: &mut TcpStream, kind: u8, channel: u16, payload: &[u8]) {
    let mut frame = vec![kind];
    frame.extend_from_slice(&channel.to_be_bytes());
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    frame.push(FRAME_END);
    stream.write_all(&frame).await.expect("write a frame");
}

/// Reads frames until a method frame of `class`.`method` arrives; returns its arguments.
async fn expect(stream: &mut TcpStream, class: u16, method: u16) -> Vec<u8> {
    loop {
        let mut header = [0u8; 7];
        stream
            .read_exact(&mut header)
            .await
            .expect("a frame header");
        let size = u32::from_be_bytes(header[3..7].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; size + 1];
        stream.read_exact(&mut payload).await.expect("a frame");
        if header[0] == 1 {
            let got = (
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            );
            assert!(
                got == (class, method) || got.0 != 10 || got.1 != 50,
                "the broker closed the connection: {}",
                String::from_utf8_lossy(&payload)
            );
            if got == (class, method) {
                return payload[4..size].to_vec();
            }
        }
    }
}

/// Publishes `body` to `queue` (through the default exchange) on the broker of `url`, with
/// `message_id` as the message id, byte for byte. Returns once the broker has closed the
/// connection cleanly, so the message is queued.
pub async fn publish_with_raw_message_id(url: &str, queue: &str, message_id: &[u8], body: &[u8]) {
    let uri: AMQPUri = url.parse().expect("an amqp:// URL");
    let talk = async {
        let mut stream = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port))
            .await
            .expect("connect to the broker");
        stream.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
        expect(&mut stream, 10, 10).await; // Start
        let mut start_ok = vec![0, 0, 0, 0]; // no client properties
        short_string(&mut start_ok, b"PLAIN");
        let userinfo = &uri.authority.userinfo;
        let response = format!("\0{}\0{}", userinfo.username, userinfo.password);
        start_ok.extend_from_slice(&u32::try_from(response.len()).unwrap().to_be_bytes());
        start_ok.extend_from_slice(response.as_bytes());
        short_string(&mut start_ok, b"en_US");
        send(&mut stream, 1, 0, &method(10, 11, &start_ok)).await;
        let tune = expect(&mut stream, 10, 30).await;
        let mut tune_ok = tune[0..2].to_vec(); // channel max as offered
        tune_ok.extend_from_slice(&131_072u32.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeat
        send(&mut stream, 1, 0, &method(10, 31, &tune_ok)).await;
        let mut open = Vec::new();
        short_string(&mut open, uri.vhost.as_bytes());
        short_string(&mut open, b"");
        open.push(0);
        send(&mut stream, 1, 0, &method(10, 40, &open)).await;
        expect(&mut stream, 10, 41).await; // OpenOk
        send(&mut stream, 1, 1, &method(20, 10, &[0])).await;
        expect(&mut stream, 20, 11).await; // Channel.OpenOk
        let mut publish = vec![0, 0];
        short_string(&mut publish, b"");
        short_string(&mut publish, queue.as_bytes());
        publish.push(0);
        send(&mut stream, 1, 1, &method(60, 40, &publish)).await;
        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        // Property flags: delivery-mode (bit 12) and message-id (bit 7).
        header.extend_from_slice(&((1u16 << 12) | (1u16 << 7)).to_be_bytes());
        header.push(2); // persistent
        short_string(&mut header, message_id);
        send(&mut stream, 2, 1, &header).await;
        send(&mut stream, 3, 1, body).await;
        // Connection.Close: the broker handles the publish before it answers CloseOk.
        let mut close = 200u16.to_be_bytes().to_vec();
        short_string(&mut close, b"bye");
        close.extend_from_slice(&[0, 0, 0, 0]);
        send(&mut stream, 1, 0, &method(10, 50, &close)).await;
        expect(&mut stream, 10, 51).await;
    };
    tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .expect("the raw publish finished within 10 s");
}
