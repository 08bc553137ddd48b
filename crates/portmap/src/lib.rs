//! Port mapping: ask the home router to forward our listening ports (TCP and UDP) to us, so
//! peers behind no NAT of their own can reach a node behind one.
//!
//! [`PortMapper::start`] runs one task. It finds the gateway (the default route in
//! `/proc/net/route`, or [`Config::gateway`]) and our address towards it, then tries UPnP
//! IGD first (`igd-next`: SSDP search, then `AddPortMapping` for each port, the external
//! port equal to the internal one when the router allows, another one when not), and
//! NAT-PMP/PCP next (`crab_nat`: PCP, falling back to NAT-PMP). The timing — renew at half
//! the lease, back off on failure — is the sans-IO [`schedule::Schedule`]. What is mapped
//! is in [`PortMapper::status`]; [`PortMapper::shutdown`] removes the mappings.

pub mod route;
pub mod schedule;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use schedule::{Due, Schedule};

/// Transport protocol of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// How a mapping was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Upnp,
    /// NAT-PMP or PCP (`crab_nat` picks).
    NatPmp,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Upnp => "UPnP",
            Method::NatPmp => "NAT-PMP/PCP",
        })
    }
}

/// What to map and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The ports to map (internal ports; the external one is asked to be the same).
    pub ports: Vec<(Protocol, u16)>,
    /// The gateway to ask; `None`: the default route's.
    pub gateway: Option<Ipv4Addr>,
    /// The lease asked for (routers may grant another).
    pub lease: Duration,
    /// Try UPnP IGD.
    pub upnp: bool,
    /// Try NAT-PMP/PCP.
    pub natpmp: bool,
    /// How long one discovery or request may take.
    pub timeout: Duration,
    /// The description a UPnP router shows.
    pub description: String,
}

impl Config {
    /// Map `port` for TCP and UDP, both methods, a one-hour lease.
    pub fn new(port: u16) -> Config {
        Config {
            ports: vec![(Protocol::Tcp, port), (Protocol::Udp, port)],
            gateway: None,
            lease: Duration::from_secs(3600),
            upnp: true,
            natpmp: true,
            timeout: Duration::from_secs(3),
            description: "bitpeer".into(),
        }
    }
}

/// One mapping in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub protocol: Protocol,
    pub internal: SocketAddr,
    /// The router's external address and port, as the router reports them.
    pub external: SocketAddr,
}

/// What the mapper knows now.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub gateway: Option<Ipv4Addr>,
    pub method: Option<Method>,
    pub external_ip: Option<IpAddr>,
    pub mappings: Vec<Mapping>,
    /// The last failure, until the next success.
    pub error: Option<String>,
    /// Successful map or renew rounds.
    pub renewals: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no default gateway (no default route in /proc/net/route)")]
    NoGateway,
    #[error("cannot find our address towards the gateway {0}: {1}")]
    LocalAddr(Ipv4Addr, std::io::Error),
    #[error("UPnP: {0}")]
    Upnp(String),
    #[error("NAT-PMP/PCP: {0}")]
    NatPmp(String),
    #[error("{0}; {1}")]
    Both(Box<Error>, Box<Error>),
    #[error("no method enabled")]
    NoMethod,
}

/// A running port mapper (see the crate docs). Dropping it stops the task without
/// removing the mappings (they expire with their lease); [`PortMapper::shutdown`] removes them.
pub struct PortMapper {
    status: Arc<Mutex<Status>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PortMapper {
    /// Start mapping. Must be called inside a Tokio runtime.
    pub fn start(config: Config) -> PortMapper {
        let status = Arc::new(Mutex::new(Status::default()));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(config, status.clone(), rx));
        PortMapper {
            status,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A handle on the status, to read it from another task.
    pub fn status_handle(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    /// Wait until the first attempt has ended (mapped or failed), at most `limit`.
    pub async fn wait_first_attempt(&self, limit: Duration) -> Status {
        Self::wait_first(&self.status, limit).await
    }

    /// [`PortMapper::wait_first_attempt`] on a [`PortMapper::status_handle`].
    pub async fn wait_first(status: &Mutex<Status>, limit: Duration) -> Status {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let s = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if s.renewals > 0 || s.error.is_some() || tokio::time::Instant::now() >= deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Remove the mappings (bounded by the request timeout) and stop.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The mappings we hold, by method.
enum Held {
    None,
    Upnp {
        gateway: igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
        mapped: Vec<(Protocol, u16)>,
    },
    NatPmp(Vec<crab_nat::PortMapping>),
}

fn set(status: &Mutex<Status>, f: impl FnOnce(&mut Status)) {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
}

async fn run(config: Config, status: Arc<Mutex<Status>>, mut stop: oneshot::Receiver<()>) {
    let mut schedule = Schedule::new(Instant::now());
    let mut held = Held::None;
    loop {
        let now = Instant::now();
        if let Some(due) = schedule.due(now) {
            let result = match due {
                Due::Renew => renew(&config, &mut held).await,
                Due::Map => Err(Error::NoMethod),
            };
            let result = match (due, result) {
                (Due::Renew, Ok(r)) => Ok(r),
                // A failed renewal, or a fresh start: map from scratch.
                _ => {
                    remove(&mut held, config.timeout).await;
                    map(&config, &mut held).await
                }
            };
            let now = Instant::now();
            match result {
                Ok((lease, st)) => {
                    for m in &st.mappings {
                        tracing::info!(
                            method = %st.method.map(|m| m.to_string()).unwrap_or_default(),
                            "port mapping: {} {} -> {}",
                            m.protocol,
                            m.internal,
                            m.external
                        );
                    }
                    schedule.mapped(now, lease);
                    set(&status, |s| {
                        let renewals = s.renewals + 1;
                        *s = st;
                        s.renewals = renewals;
                    });
                }
                Err(e) => {
                    tracing::info!(error = %e, "port mapping failed");
                    schedule.failed(now);
                    set(&status, |s| {
                        s.error = Some(e.to_string());
                        if !schedule.is_mapped(now) {
                            s.mappings.clear();
                        }
                    });
                }
            }
        }
        let wake = tokio::time::Instant::from_std(schedule.poll_timeout());
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = &mut stop => break,
        }
    }
    remove(&mut held, config.timeout).await;
    set(&status, |s| s.mappings.clear());
}

/// Our address towards `gateway` (the source address the kernel would pick).
fn local_ip(gateway: Ipv4Addr) -> Result<Ipv4Addr, Error> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((gateway, 9)).map(|()| s))
        .map_err(|e| Error::LocalAddr(gateway, e))?;
    match s
        .local_addr()
        .map_err(|e| Error::LocalAddr(gateway, e))?
        .ip()
    {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(Error::NoGateway),
    }
}

fn gateway(config: &Config) -> Result<Ipv4Addr, Error> {
    match config.gateway {
        Some(g) => Ok(g),
        None => std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| route::default_gateway(&t))
            .ok_or(Error::NoGateway),
    }
}

/// Map every port: UPnP first, then NAT-PMP/PCP. The granted lease and the new status.
async fn map(config: &Config, held: &mut Held) -> Result<(Duration, Status), Error> {
    let gw = gateway(config)?;
    let local = local_ip(gw)?;
    let mut upnp_error = None;
    let before = match held {
        Held::Upnp { mapped, .. } => mapped.clone(),
        _ => Vec::new(),
    };
    if config.upnp {
        match map_upnp(config, gw, local, &before).await {
            Ok((h, st)) => {
                *held = h;
                return Ok((config.lease, st));
            }
            Err(e) => upnp_error = Some(e),
        }
    }
    if config.natpmp {
        match map_natpmp(config, gw, local).await {
            Ok((h, lease, st)) => {
                *held = h;
                return Ok((lease, st));
            }
            Err(e) => {
                return Err(match upnp_error {
                    Some(u) => Error::Both(Box::new(u), Box::new(e)),
                    None => e,
                });
            }
        }
    }
    Err(upnp_error.unwrap_or(Error::NoMethod))
}

fn igd_protocol(p: Protocol) -> igd_next::PortMappingProtocol {
    match p {
        Protocol::Tcp => igd_next::PortMappingProtocol::TCP,
        Protocol::Udp => igd_next::PortMappingProtocol::UDP,
    }
}

/// Maps one port by UPnP: the external port we held before for this protocol (a renewal)
/// or the same number; another one only when that one is taken on the router; a
/// permanent lease (0) when the router accepts no other.
async fn map_one_upnp(
    config: &Config,
    gateway: &igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
    protocol: Protocol,
    internal: SocketAddr,
    before: &[(Protocol, u16)],
    lease: u32,
) -> Result<u16, Error> {
    use igd_next::{AddAnyPortError, AddPortError};
    let p = igd_protocol(protocol);
    let wanted = before
        .iter()
        .find(|(pr, _)| *pr == protocol)
        .map_or(internal.port(), |&(_, e)| e);
    let timeout = |what: &'static str| Error::Upnp(format!("{what}: no answer in time"));
    let failed =
        |e: &dyn std::fmt::Display| Error::Upnp(format!("AddPortMapping {protocol} {wanted}: {e}"));
    let add = |lease: u32| {
        tokio::time::timeout(
            config.timeout,
            gateway.add_port(p, wanted, internal, lease, &config.description),
        )
    };
    let mut lease = lease;
    let mut r = add(lease).await.map_err(|_| timeout("AddPortMapping"))?;
    if matches!(r, Err(AddPortError::OnlyPermanentLeasesSupported)) {
        lease = 0;
        r = add(lease).await.map_err(|_| timeout("AddPortMapping"))?;
    }
    match r {
        Ok(()) => Ok(wanted),
        // Taken on the router (by another host): any external port will do.
        Err(AddPortError::PortInUse) => {
            let any = |lease: u32| {
                tokio::time::timeout(
                    config.timeout,
                    gateway.add_any_port(p, internal, lease, &config.description),
                )
            };
            let mut r = any(lease).await.map_err(|_| timeout("AddAnyPortMapping"))?;
            if matches!(r, Err(AddAnyPortError::OnlyPermanentLeasesSupported)) {
                r = any(0).await.map_err(|_| timeout("AddAnyPortMapping"))?;
            }
            r.map_err(|e| failed(&e))
        }
        Err(e) => Err(failed(&e)),
    }
}

/// `before`: the external ports a previous pass held, kept when the router still allows.
async fn map_upnp(
    config: &Config,
    gw: Ipv4Addr,
    local: Ipv4Addr,
    before: &[(Protocol, u16)],
) -> Result<(Held, Status), Error> {
    let mut options = igd_next::SearchOptions::default();
    options.bind_addr = SocketAddr::from((local, 0));
    options.timeout = Some(config.timeout);
    options.single_search_timeout = Some(config.timeout);
    let gateway = igd_next::aio::tokio::search_gateway(options)
        .await
        .map_err(|e| Error::Upnp(format!("no Internet Gateway Device answered: {e}")))?;
    let timeout = |what: &'static str| Error::Upnp(format!("{what}: no answer in time"));
    let external_ip = tokio::time::timeout(config.timeout, gateway.get_external_ip())
        .await
        .map_err(|_| timeout("GetExternalIPAddress"))?
        .map_err(|e| Error::Upnp(format!("GetExternalIPAddress: {e}")))?;
    let lease = u32::try_from(config.lease.as_secs()).unwrap_or(u32::MAX);
    let mut st = Status {
        gateway: Some(gw),
        method: Some(Method::Upnp),
        external_ip: Some(external_ip),
        ..Default::default()
    };
    let mut mapped: Vec<(Protocol, u16)> = Vec::new();
    for &(protocol, port) in &config.ports {
        let internal = SocketAddr::from((local, port));
        match map_one_upnp(config, &gateway, protocol, internal, before, lease).await {
            Ok(external_port) => {
                mapped.push((protocol, external_port));
                st.mappings.push(Mapping {
                    protocol,
                    internal,
                    external: SocketAddr::new(external_ip, external_port),
                });
            }
            Err(e) => {
                // All or nothing: what this pass mapped already is removed again.
                for &(protocol, external) in &mapped {
                    let _ = tokio::time::timeout(
                        config.timeout,
                        gateway.remove_port(igd_protocol(protocol), external),
                    )
                    .await;
                }
                return Err(e);
            }
        }
    }
    Ok((Held::Upnp { gateway, mapped }, st))
}

fn crab_protocol(p: Protocol) -> crab_nat::InternetProtocol {
    match p {
        Protocol::Tcp => crab_nat::InternetProtocol::Tcp,
        Protocol::Udp => crab_nat::InternetProtocol::Udp,
    }
}

fn crab_timeouts(config: &Config) -> crab_nat::TimeoutConfig {
    crab_nat::TimeoutConfig {
        initial_timeout: Duration::from_millis(250),
        max_retries: 3,
        max_retry_timeout: Some(config.timeout),
    }
}

async fn map_natpmp(
    config: &Config,
    gw: Ipv4Addr,
    local: Ipv4Addr,
) -> Result<(Held, Duration, Status), Error> {
    let gateway = crab_nat::GatewayAddress::IpV4(gw);
    let mut held = Vec::new();
    let mut st = Status {
        gateway: Some(gw),
        method: Some(Method::NatPmp),
        ..Default::default()
    };
    let mut lease = config.lease;
    for &(protocol, port) in &config.ports {
        let Some(internal_port) = NonZeroU16::new(port) else {
            continue;
        };
        let options = crab_nat::PortMappingOptions {
            external_port: Some(internal_port),
            lifetime_seconds: Some(u32::try_from(config.lease.as_secs()).unwrap_or(u32::MAX)),
            timeout_config: Some(crab_timeouts(config)),
        };
        let m = crab_nat::PortMapping::new(
            gateway,
            IpAddr::V4(local),
            crab_protocol(protocol),
            internal_port,
            options,
        )
        .await
        .map_err(|e| Error::NatPmp(format!("{protocol} {port}: {e}")))?;
        lease = lease.min(Duration::from_secs(u64::from(m.lifetime())));
        let external_ip = match m.mapping_type() {
            crab_nat::PortMappingType::Pcp { external_ip, .. } => Some(external_ip),
            crab_nat::PortMappingType::NatPmp => {
                crab_nat::natpmp::external_address(gateway, Some(crab_timeouts(config)))
                    .await
                    .ok()
                    .map(IpAddr::V4)
            }
        };
        if st.external_ip.is_none() {
            st.external_ip = external_ip;
        }
        st.mappings.push(Mapping {
            protocol,
            internal: SocketAddr::from((local, port)),
            external: SocketAddr::new(
                external_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                m.external_port().get(),
            ),
        });
        held.push(m);
    }
    Ok((Held::NatPmp(held), lease, st))
}

/// Renew what we hold: UPnP by adding the same mappings again, NAT-PMP/PCP by renewing.
async fn renew(config: &Config, held: &mut Held) -> Result<(Duration, Status), Error> {
    match held {
        Held::None => Err(Error::NoMethod),
        // Mapping again, on the same external ports, refreshes the lease (and finds a
        // router that lost them). On a failure we keep what we held, to remove it at the end.
        Held::Upnp { .. } => map(config, held).await,
        Held::NatPmp(maps) => {
            let mut lease = config.lease;
            for m in maps.iter_mut() {
                m.renew()
                    .await
                    .map_err(|e| Error::NatPmp(format!("renew: {e}")))?;
                lease = lease.min(Duration::from_secs(u64::from(m.lifetime())));
            }
            let gw = gateway(config)?;
            let local = local_ip(gw)?;
            // PCP says the external address in each mapping; NAT-PMP is asked for it.
            let pcp_ip = maps.iter().find_map(|m| match m.mapping_type() {
                crab_nat::PortMappingType::Pcp { external_ip, .. } => Some(external_ip),
                crab_nat::PortMappingType::NatPmp => None,
            });
            let external_ip = match pcp_ip {
                Some(ip) => Some(ip),
                None => crab_nat::natpmp::external_address(
                    crab_nat::GatewayAddress::IpV4(gw),
                    Some(crab_timeouts(config)),
                )
                .await
                .ok()
                .map(IpAddr::V4),
            };
            let st = Status {
                gateway: Some(gw),
                method: Some(Method::NatPmp),
                external_ip,
                mappings: maps
                    .iter()
                    .map(|m| Mapping {
                        protocol: match m.protocol() {
                            crab_nat::InternetProtocol::Tcp => Protocol::Tcp,
                            crab_nat::InternetProtocol::Udp => Protocol::Udp,
                        },
                        internal: SocketAddr::from((local, m.internal_port().get())),
                        external: SocketAddr::new(
                            external_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                            m.external_port().get(),
                        ),
                    })
                    .collect(),
                ..Default::default()
            };
            Ok((lease, st))
        }
    }
}

/// Remove what we hold; each request is bounded by `timeout`, failures are logged.
async fn remove(held: &mut Held, timeout: Duration) {
    match std::mem::replace(held, Held::None) {
        Held::None => {}
        Held::Upnp { gateway, mapped } => {
            for (protocol, port) in mapped {
                match tokio::time::timeout(
                    timeout,
                    gateway.remove_port(igd_protocol(protocol), port),
                )
                .await
                {
                    Ok(Ok(())) => tracing::info!("port mapping removed: {protocol} {port}"),
                    Ok(Err(e)) => {
                        tracing::info!(error = %e, "cannot remove the mapping of {protocol} {port}")
                    }
                    Err(_) => {
                        tracing::info!("cannot remove the mapping of {protocol} {port}: no answer")
                    }
                }
            }
        }
        Held::NatPmp(maps) => {
            for m in maps {
                let what = format!("{:?} {}", m.protocol(), m.external_port());
                match tokio::time::timeout(timeout, m.try_drop()).await {
                    Ok(Ok(())) => tracing::info!("port mapping removed: {what}"),
                    Ok(Err((e, _))) => {
                        tracing::info!(error = %e, "cannot remove the mapping {what}")
                    }
                    Err(_) => tracing::info!("cannot remove the mapping {what}: no answer"),
                }
            }
        }
    }
}
