//! The DNS server: UDP and TCP listeners on one port, answers from the current [`Zone`],
//! forwarding of foreign names, and hot swaps of the snapshot.
//!
//! # Design
//!
//! * **Precomputed answers.** On every [`DnsServer::update`] the zone is compiled once and the
//!   wire bytes of every positive answer (A and SRV at every name) are encoded with
//!   hickory-proto and kept in a hash map keyed by the lower-cased wire name and type. A UDP
//!   query for such a name costs a header parse, one lookup and one copy, in which the
//!   server patches the id, the RD bit and the client's spelling of the question (same length,
//!   so the compression pointers stay valid). Everything else (NXDOMAIN, NODATA, SOA) is
//!   answered by [`Zone::answer`] and encoded per query: one rule set, two speeds.
//! * **Hot swap.** The compiled zone sits behind an [`ArcSwap`]: readers never block, an
//!   update is visible to the next query.
//! * **UDP** is served by [`UDP_THREADS`] plain threads blocked in `recv_from` on clones of one
//!   socket (the kernel hands each datagram to one of them), so the hot path has no task
//!   spawn, channel or wake-up; **TCP** (RFC 7766 framing, several queries per connection) is
//!   served by tokio tasks, at most [`MAX_TCP_CONNECTIONS`] connections, each closed after
//!   [`TCP_IDLE_TIMEOUT`] without a query.
//! * **Forwarding.** A query for a name outside every namespace is relayed byte for byte to
//!   the upstreams in order (over UDP for UDP clients, over TCP for TCP clients), each tried
//!   for [`FORWARD_TIMEOUT`]; at most [`MAX_FORWARDS`] are in flight, beyond that the
//!   server answers SERVFAIL at once instead of queueing. All upstreams failing → SERVFAIL;
//!   no upstream configured → REFUSED. RA is set only when there are upstreams.
//! * **EDNS(0) and size.** A query with an OPT record gets one back (payload
//!   [`EDNS_PAYLOAD`]). A response larger than the client's UDP size (512 without EDNS) first
//!   loses additional records from the end (RFC 2181 §9, as NSD does); only when the answer
//!   section itself does not fit is it sent with TC set and no records, so the client retries
//!   over TCP.
//!
//! hickory-server's `Server` was not used: it spawns a task per UDP datagram, passes replies
//! through a channel and re-encodes every answer, and its response API takes structured
//! messages only, so neither the precomputed bytes nor a byte-for-byte relay fit it.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType as WireType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::zone::{Answer, Reply, Snapshot, Zone, ZoneError};

/// Threads serving UDP.
pub const UDP_THREADS: usize = 2;
/// Most forwarded queries in flight; more are answered SERVFAIL at once.
pub const MAX_FORWARDS: usize = 256;
/// How long one upstream gets to answer a forwarded query.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Most TCP connections served at once; more are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection without a query for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The UDP payload size the server advertises in its OPT record (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// How often a UDP thread looks at the stop flag when no datagram arrives.
const UDP_STOP_POLL: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The snapshot is invalid.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// A socket could not be bound or configured.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// A running DNS server; dropping it stops it.
pub struct DnsServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    udp_threads: Vec<ThreadHandle<()>>,
    tcp: JoinHandle<()>,
}

struct Shared {
    compiled: ArcSwap<Compiled>,
    serial: AtomicU32,
    upstreams: Vec<SocketAddr>,
    forwards: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
}

/// A zone plus the wire bytes of its positive answers.
struct Compiled {
    zone: Zone,
    /// Key: lower-cased wire name followed by the big-endian qtype. Value: a whole response
    /// with id 0, RD clear, the lower-cased question and no OPT record.
    cache: HashMap<Box<[u8]>, Template>,
}

/// An encoded response (id 0, RD clear, lower-cased question, no OPT record) and where its
/// additional records end, so that a response too big for the client can drop them from the
/// end (RFC 2181 §9: only an answer section that does not fit sets TC).
struct Template {
    bytes: Box<[u8]>,
    /// Offset of the first additional record.
    additional_start: usize,
    /// End offset of each additional record, in order.
    additional_ends: Box<[usize]>,
}

impl Template {
    fn new(bytes: Vec<u8>) -> Option<Template> {
        let count = |i: usize| usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        let mut pos = skip_name(&bytes, HEADER_LEN)? + 4;
        for _ in 0..count(6) + count(8) {
            pos = skip_record(&bytes, pos)?;
        }
        let additional_start = pos;
        let mut additional_ends = Vec::with_capacity(count(10));
        for _ in 0..count(10) {
            pos = skip_record(&bytes, pos)?;
            additional_ends.push(pos);
        }
        Some(Template {
            bytes: bytes.into_boxed_slice(),
            additional_start,
            additional_ends: additional_ends.into_boxed_slice(),
        })
    }

    /// How many bytes and additional records to keep to fit in `max` bytes; `None` when even
    /// the answer and authority sections do not fit.
    fn cut(&self, max: usize) -> Option<(usize, usize)> {
        if self.bytes.len() <= max {
            return Some((self.bytes.len(), self.additional_ends.len()));
        }
        if self.additional_start > max {
            return None;
        }
        let keep = self.additional_ends.partition_point(|&end| end <= max);
        let len = keep
            .checked_sub(1)
            .map_or(self.additional_start, |last| self.additional_ends[last]);
        Some((len, keep))
    }
}

/// The offset after the (possibly compressed) name at `pos`.
fn skip_name(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *bytes.get(pos)?;
        if len & 0xc0 == 0xc0 {
            return Some(pos + 2);
        }
        pos += 1 + usize::from(len);
        if len == 0 {
            return Some(pos);
        }
    }
}

/// The offset after the resource record at `pos`.
fn skip_record(bytes: &[u8], pos: usize) -> Option<usize> {
    let pos = skip_name(bytes, pos)?;
    let rdlen = bytes.get(pos + 8..pos + 10)?;
    let end = pos + 10 + usize::from(u16::from_be_bytes([rdlen[0], rdlen[1]]));
    (end <= bytes.len()).then_some(end)
}

impl DnsServer {
    /// Binds UDP and TCP on `bind` (port 0 picks a free port, the same for both) and serves
    /// `snapshot`; names outside its namespaces go to `upstreams`. Must be called inside a
    /// tokio runtime, which then runs TCP and forwarding.
    pub async fn start(
        bind: SocketAddr,
        snapshot: &Snapshot,
        upstreams: Vec<SocketAddr>,
    ) -> Result<DnsServer, StartError> {
        let compiled = Compiled::new(snapshot, 1)?;
        let (udp, tcp) = bind_both(bind)?;
        let local_addr = udp.local_addr()?;
        udp.set_read_timeout(Some(UDP_STOP_POLL))?;
        let shared = Arc::new(Shared {
            compiled: ArcSwap::from_pointee(compiled),
            serial: AtomicU32::new(1),
            upstreams,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            runtime: tokio::runtime::Handle::current(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut udp_threads = Vec::new();
        for i in 0..UDP_THREADS {
            let socket = udp.try_clone()?;
            let shared = shared.clone();
            let stop = stop.clone();
            udp_threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || serve_udp(&socket, &shared, &stop))?,
            );
        }
        tcp.set_nonblocking(true)?;
        let tcp = TcpListener::from_std(tcp)?;
        let tcp = tokio::spawn(serve_tcp(tcp, shared.clone()));
        Ok(DnsServer {
            shared,
            local_addr,
            stop,
            udp_threads,
            tcp,
        })
    }

    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the served snapshot; the next query sees it. An invalid snapshot is rejected
    /// and the previous one kept.
    pub fn update(&self, snapshot: &Snapshot) -> Result<(), ZoneError> {
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let compiled = Compiled::new(snapshot, serial)?;
        self.shared.compiled.store(Arc::new(compiled));
        Ok(())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tcp.abort();
        // Wake the UDP threads with empty datagrams; the poll interval is the fallback.
        if let Ok(socket) = UdpSocket::bind(unspecified(self.local_addr)) {
            for _ in &self.udp_threads {
                let _ = socket.send_to(&[], loopback(self.local_addr));
            }
        }
    }
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        (ip, addr.port()).into()
    } else {
        addr
    }
}

/// Binds UDP, then TCP on the same port; with port 0, retries when TCP's port is taken.
fn bind_both(bind: SocketAddr) -> io::Result<(UdpSocket, StdTcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(bind)?;
        match StdTcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if bind.port() == 0 && e.kind() == ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

impl Compiled {
    fn new(snapshot: &Snapshot, serial: u32) -> Result<Self, ZoneError> {
        let zone = Zone::new(snapshot, serial)?;
        let mut cache = HashMap::new();
        for name in zone.names() {
            for qtype in [WireType::A, WireType::SRV] {
                let Answer::Local(reply) = zone.answer(name, qtype, DNSClass::IN) else {
                    continue;
                };
                if reply.answers.is_empty() {
                    continue;
                }
                let Some(template) = encode(name, qtype, DNSClass::IN, &reply) else {
                    continue;
                };
                let mut key = name.to_bytes().unwrap_or_default();
                key.extend_from_slice(&u16::from(qtype).to_be_bytes());
                cache.insert(key.into_boxed_slice(), template);
            }
        }
        Ok(Compiled { zone, cache })
    }
}

/// Encodes `reply` as a response with id 0 and the question `(qname, qtype, qclass)`.
fn encode(qname: &Name, qtype: WireType, qclass: DNSClass, reply: &Reply) -> Option<Template> {
    let mut message = Message::response(0, OpCode::Query);
    message.metadata.authoritative = true;
    message.metadata.response_code = reply.rcode;
    let mut query = Query::query(qname.clone(), qtype);
    query.set_query_class(qclass);
    message.add_query(query);
    message.add_answers(reply.answers.iter().cloned());
    message.add_authorities(reply.authority.iter().cloned());
    message.add_additionals(reply.additionals.iter().cloned());
    match message.to_vec() {
        Ok(bytes) => Template::new(bytes),
        Err(error) => {
            tracing::warn!(%error, %qname, "cannot encode an answer");
            None
        }
    }
}

/// What to do with one received message.
enum Action {
    Reply(Vec<u8>),
    Forward,
    Ignore,
}

/// The parts of a query the server needs.
struct ParsedQuery<'a> {
    /// The question section as sent: name, type, class.
    question: &'a [u8],
    /// Lower-cased wire name followed by the qtype: the cache key.
    key: [u8; 257],
    key_len: usize,
    qtype: u16,
    qclass: u16,
    /// The client's EDNS UDP payload size, when it sent an OPT record.
    edns: Option<u16>,
}

const HEADER_LEN: usize = 12;
const FLAG_QR: u8 = 0x80;
const FLAG_AA: u8 = 0x04;
const FLAG_TC: u8 = 0x02;
const FLAG_RD: u8 = 0x01;
const FLAG_RA: u8 = 0x80;
const OPT: [u8; 11] = {
    let p = EDNS_PAYLOAD.to_be_bytes();
    [0, 0, 41, p[0], p[1], 0, 0, 0, 0, 0, 0]
};

/// Parses a query; `Err(rcode)` when it is malformed or unsupported but deserves an answer.
fn parse(msg: &[u8]) -> Result<ParsedQuery<'_>, ResponseCode> {
    let opcode = (msg[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Err(ResponseCode::NotImp);
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    if count(4) != 1 {
        return Err(ResponseCode::FormErr);
    }
    let mut key = [0u8; 257];
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(pos).ok_or(ResponseCode::FormErr)?);
        if len & 0xc0 != 0 {
            return Err(ResponseCode::FormErr); // no compression in a question
        }
        let end = pos + 1 + len;
        if end - HEADER_LEN > 255 || end > msg.len() {
            return Err(ResponseCode::FormErr);
        }
        for (k, b) in key[pos - HEADER_LEN..end - HEADER_LEN]
            .iter_mut()
            .zip(&msg[pos..end])
        {
            *k = b.to_ascii_lowercase();
        }
        pos = end;
        if len == 0 {
            break;
        }
    }
    let tail = msg.get(pos..pos + 4).ok_or(ResponseCode::FormErr)?;
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    let name_len = pos - HEADER_LEN;
    key[name_len..name_len + 2].copy_from_slice(&tail[..2]);
    let question = &msg[HEADER_LEN..pos + 4];
    // An OPT record, if any, is the first additional record of a plain query.
    let mut edns = None;
    let rest = &msg[pos + 4..];
    if count(6) == 0
        && count(8) == 0
        && count(10) >= 1
        && rest.len() >= 11
        && rest[0] == 0
        && u16::from_be_bytes([rest[1], rest[2]]) == 41
    {
        edns = Some(u16::from_be_bytes([rest[3], rest[4]]).max(512));
    }
    Ok(ParsedQuery {
        question,
        key,
        key_len: name_len + 2,
        qtype,
        qclass,
        edns,
    })
}

impl Shared {
    /// Answers one message; `udp` decides the size limit.
    fn respond(&self, msg: &[u8], udp: bool) -> Action {
        if msg.len() < HEADER_LEN || msg[2] & FLAG_QR != 0 {
            return Action::Ignore;
        }
        let query = match parse(msg) {
            Ok(query) => query,
            Err(rcode) => return Action::Reply(self.header_only(msg, None, rcode, false)),
        };
        let compiled = self.compiled.load();
        if query.qclass == u16::from(DNSClass::IN)
            && let Some(template) = compiled.cache.get(&query.key[..query.key_len])
        {
            return Action::Reply(self.finish(template, msg, &query, udp));
        }
        let Ok(qname) = Name::read(&mut BinDecoder::new(query.question)) else {
            return Action::Reply(self.header_only(msg, None, ResponseCode::FormErr, false));
        };
        let qtype = WireType::from(query.qtype);
        let qclass = DNSClass::from(query.qclass);
        match compiled.zone.answer(&qname, qtype, qclass) {
            Answer::Foreign if self.upstreams.is_empty() => {
                Action::Reply(self.header_only(msg, Some(&query), ResponseCode::Refused, false))
            }
            Answer::Foreign => Action::Forward,
            Answer::Local(reply) => match encode(&qname.to_lowercase(), qtype, qclass, &reply) {
                Some(template) => Action::Reply(self.finish(&template, msg, &query, udp)),
                None => Action::Reply(self.header_only(
                    msg,
                    Some(&query),
                    ResponseCode::ServFail,
                    false,
                )),
            },
        }
    }

    /// Turns a template (id 0, lower-cased question) into the response to `msg`.
    fn finish(
        &self,
        template: &Template,
        msg: &[u8],
        query: &ParsedQuery<'_>,
        udp: bool,
    ) -> Vec<u8> {
        let limit = if udp {
            usize::from(query.edns.unwrap_or(512))
        } else {
            usize::from(u16::MAX)
        };
        let opt_len = if query.edns.is_some() { OPT.len() } else { 0 };
        let Some((len, arcount)) = template.cut(limit - opt_len) else {
            let rcode = ResponseCode::from_low(template.bytes[3] & 0x0f);
            return self.header_only(msg, Some(query), rcode, true);
        };
        let mut out = Vec::with_capacity(len + opt_len);
        out.extend_from_slice(&template.bytes[..len]);
        let mut arcount = u16::try_from(arcount).unwrap_or(u16::MAX);
        out[0..2].copy_from_slice(&msg[0..2]);
        out[2] |= msg[2] & FLAG_RD;
        if !self.upstreams.is_empty() {
            out[3] |= FLAG_RA;
        }
        out[HEADER_LEN..HEADER_LEN + query.question.len()].copy_from_slice(query.question);
        if query.edns.is_some() {
            out.extend_from_slice(&OPT);
            arcount += 1;
        }
        out[10..12].copy_from_slice(&arcount.to_be_bytes());
        out
    }

    /// A response with no records: the header of `msg`, `rcode`, and the question if parsed.
    fn header_only(
        &self,
        msg: &[u8],
        query: Option<&ParsedQuery<'_>>,
        rcode: ResponseCode,
        truncated: bool,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        out.extend_from_slice(&msg[..HEADER_LEN]);
        out[2] = (msg[2] & (0x78 | FLAG_RD)) | FLAG_QR;
        if truncated {
            out[2] |= FLAG_TC | FLAG_AA;
        }
        out[3] = rcode.low();
        if !self.upstreams.is_empty() {
            out[3] |= FLAG_RA;
        }
        out[4..12].fill(0);
        if let Some(query) = query {
            out[5] = 1;
            out.extend_from_slice(query.question);
            if query.edns.is_some() {
                out[11] = 1;
                out.extend_from_slice(&OPT);
            }
        }
        out
    }

    /// SERVFAIL for `msg`, used when forwarding fails.
    fn servfail(&self, msg: &[u8]) -> Vec<u8> {
        let query = parse(msg).ok();
        self.header_only(msg, query.as_ref(), ResponseCode::ServFail, false)
    }
}

fn serve_udp(socket: &UdpSocket, shared: &Arc<Shared>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(error) => {
                // ICMP errors from earlier sends surface here on Linux; keep serving.
                tracing::debug!(%error, "udp receive");
                continue;
            }
        };
        let msg = &buf[..len];
        match shared.respond(msg, true) {
            Action::Reply(out) => {
                let _ = socket.send_to(&out, peer);
            }
            Action::Ignore => {}
            Action::Forward => forward_udp_client(shared, socket, msg.to_vec(), peer),
        }
    }
}

fn forward_udp_client(shared: &Arc<Shared>, socket: &UdpSocket, msg: Vec<u8>, peer: SocketAddr) {
    let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
        let _ = socket.send_to(&shared.servfail(&msg), peer);
        return;
    };
    let Ok(socket) = socket.try_clone() else {
        return;
    };
    let shared = shared.clone();
    shared.runtime.clone().spawn(async move {
        let out = match forward(&shared.upstreams, &msg, false).await {
            Some(out) => out,
            None => shared.servfail(&msg),
        };
        drop(permit);
        let _ = socket.send_to(&out, peer);
    });
}

/// Relays `msg` to the upstreams in order; the first answer with the same id wins.
async fn forward(upstreams: &[SocketAddr], msg: &[u8], tcp: bool) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let attempt = async {
            if tcp {
                forward_tcp(*upstream, msg).await
            } else {
                forward_udp(*upstream, msg).await
            }
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, attempt).await {
            Ok(Ok(out)) => return Some(out),
            Ok(Err(error)) => tracing::debug!(%error, %upstream, "forwarding failed"),
            Err(_) => tracing::debug!(%upstream, "forwarding timed out"),
        }
    }
    None
}

async fn forward_udp(upstream: SocketAddr, msg: &[u8]) -> io::Result<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind(unspecified(upstream)).await?;
    socket.connect(upstream).await?;
    socket.send(msg).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        if len >= HEADER_LEN && buf[0..2] == msg[0..2] && buf[2] & FLAG_QR != 0 {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(upstream: SocketAddr, msg: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(msg.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    // Owned here so that aborting this task ends every connection too.
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(%error, "tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue; // over the limit: the stream is dropped, closing it
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            if let Err(error) = serve_tcp_connection(stream, &shared).await {
                tracing::debug!(%error, "tcp connection");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        };
        let mut msg = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut msg))
            .await
            .map_err(|_| io::Error::from(ErrorKind::TimedOut))??;
        let out = match shared.respond(&msg, false) {
            Action::Reply(out) => out,
            Action::Ignore => continue,
            Action::Forward => {
                let forwarded = match shared.forwards.clone().try_acquire_owned() {
                    Ok(_permit) => forward(&shared.upstreams, &msg, true).await,
                    Err(_) => None,
                };
                forwarded.unwrap_or_else(|| shared.servfail(&msg))
            }
        };
        let len = u16::try_from(out.len()).map_err(io::Error::other)?;
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&out);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{Instance, Namespace, RecordType, Service};

    fn shared(upstreams: Vec<SocketAddr>) -> (tokio::runtime::Runtime, Shared) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let snapshot = Snapshot {
            namespaces: vec![Namespace {
                name: "corp.local".into(),
                services: vec![Service {
                    name: "web".into(),
                    ttl: 30,
                    record_types: vec![RecordType::A, RecordType::Srv],
                    instances: (1..=40)
                        .map(|i| Instance {
                            id: format!("task-{i}"),
                            ipv4: Ipv4Addr::new(10, 0, 0, i),
                            port: Some(8000),
                            healthy: true,
                        })
                        .collect(),
                }],
            }],
        };
        let shared = Shared {
            compiled: ArcSwap::from_pointee(Compiled::new(&snapshot, 1).unwrap()),
            serial: AtomicU32::new(1),
            upstreams,
            forwards: Arc::new(Semaphore::new(1)),
            runtime: rt.handle().clone(),
        };
        (rt, shared)
    }

    fn query(name: &str, qtype: WireType, edns: bool) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            let mut edns = hickory_proto::op::Edns::new();
            edns.set_max_payload(1232);
            message.set_edns(edns);
        }
        message.to_vec().unwrap()
    }

    fn reply(action: Action) -> Message {
        match action {
            Action::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            Action::Forward => panic!("forwarded"),
            Action::Ignore => panic!("ignored"),
        }
    }

    #[test]
    fn cached_answer_keeps_id_rd_and_the_clients_spelling() {
        let (_rt, s) = shared(vec![]);
        let m = reply(s.respond(&query("WEB.corp.local.", WireType::A, true), true));
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired && m.metadata.authoritative);
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.queries[0].name().to_string(), "WEB.corp.local.");
        assert_eq!(m.answers.len(), 40);
        assert!(m.edns.is_some());
    }

    #[test]
    fn too_big_for_512_bytes_is_truncated_and_fits_over_tcp() {
        let (_rt, s) = shared(vec![]);
        let q = query("web.corp.local.", WireType::SRV, false);
        let m = reply(s.respond(&q, true));
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let m = reply(s.respond(&q, false));
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (40, 40));
    }

    #[test]
    fn additional_records_are_dropped_before_setting_tc() {
        let (_rt, s) = shared(vec![]);
        // 40 SRV records fit in 4096 bytes with some of their A records, not all.
        let mut q = query("web.corp.local.", WireType::SRV, true);
        let payload = q.len() - 11 + 3; // the OPT record's class field: the UDP payload size
        q[payload..payload + 2].copy_from_slice(&2000u16.to_be_bytes());
        let Action::Reply(bytes) = s.respond(&q, true) else {
            panic!("no reply")
        };
        assert!(bytes.len() <= 2000);
        let m = Message::from_vec(&bytes).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 40);
        assert!(!m.additionals.is_empty() && m.additionals.len() < 40);
        assert!(m.edns.is_some());
    }

    #[test]
    fn foreign_names_are_refused_without_upstreams_and_forwarded_with() {
        let (_rt, s) = shared(vec![]);
        let m = reply(s.respond(&query("example.com.", WireType::A, false), true));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let (_rt, s) = shared(vec!["127.0.0.1:9".parse().unwrap()]);
        assert!(matches!(
            s.respond(&query("example.com.", WireType::A, false), true),
            Action::Forward
        ));
    }

    #[test]
    fn malformed_and_unsupported_queries() {
        let (_rt, s) = shared(vec![]);
        assert!(matches!(s.respond(&[0; 5], true), Action::Ignore));
        let mut q = query("web.corp.local.", WireType::A, false);
        q[2] |= 2 << 3; // opcode STATUS
        let m = reply(s.respond(&q, true));
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        let mut q = query("web.corp.local.", WireType::A, false);
        q.truncate(q.len() - 3);
        let m = reply(s.respond(&q, true));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
}
