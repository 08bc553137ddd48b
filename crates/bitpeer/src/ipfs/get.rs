//! `bitpeer ipfs get`: fetches a DAG from trustless gateways block by block
//! (`GET /ipfs/{cid}?format=raw`), checking every block against its CID before it is stored,
//! then writes the file or folder from the store. Blocks already held are used as they
//! are, so an interrupted fetch resumes where it stopped. A gateway that sends a block that
//! does not match its CID is dropped (with a warning, or the fetch fails when none is left):
//! nothing unverified is ever stored or written.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ipfs::store::MAX_BLOCK_SIZE;
use ipfs::{BlockStore, Cid, Error, dag};
use tokio::task::JoinSet;

use crate::{CliError, CliResult};

/// Blocks requested at once.
const PARALLEL: usize = 16;

pub struct Fetch {
    client: reqwest::Client,
    gateways: Vec<String>,
    /// Gateways that sent a wrong block, by index: never asked again.
    refused: std::sync::Mutex<HashSet<usize>>,
}

#[derive(Default, Debug)]
pub struct Counts {
    pub fetched: u64,
    pub held: u64,
    pub bytes: u64,
}

impl Fetch {
    pub fn new(gateways: Vec<String>) -> CliResult<Fetch> {
        let tls = tracker::client::tls_config(&[]).map_err(|e| CliError::new(e.to_string()))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("bitpeer/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| CliError::new(format!("HTTP client: {e}")))?;
        let gateways = gateways
            .into_iter()
            .map(|g| g.trim_end_matches('/').to_owned())
            .collect();
        Ok(Fetch {
            client,
            gateways,
            refused: Default::default(),
        })
    }

    /// One block from the first gateway that has it and sends it intact.
    async fn block(&self, cid: &Cid) -> CliResult<Vec<u8>> {
        let mut last = String::from("no gateway left");
        for (i, gw) in self.gateways.iter().enumerate() {
            if self.refused.lock().unwrap().contains(&i) {
                continue;
            }
            match self.try_block(gw, cid).await {
                Ok(block) => match ipfs::verify_block(cid, &block) {
                    Ok(()) => return Ok(block),
                    Err(e) => {
                        self.refused.lock().unwrap().insert(i);
                        last = format!(
                            "gateway {gw} sent a wrong block for {cid} ({e}); gateway refused"
                        );
                        eprintln!("warning: {last}");
                    }
                },
                Err(e) => last = format!("{gw}: {cid}: {e}"),
            }
        }
        Err(CliError::new(last))
    }

    async fn try_block(&self, gw: &str, cid: &Cid) -> Result<Vec<u8>, String> {
        let url = format!("{gw}/ipfs/{cid}?format=raw");
        let mut resp = self
            .client
            .get(&url)
            .header("accept", "application/vnd.ipld.raw")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BLOCK_SIZE as u64)
        {
            return Err("block larger than 2 MiB".into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > MAX_BLOCK_SIZE {
                return Err("block larger than 2 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The block's children: every link of a dag-pb node, none of a raw block.
fn links(cid: &Cid, block: &[u8]) -> Result<Vec<Cid>, Error> {
    Ok(match dag::decode(cid, block)? {
        dag::Node::File { links, .. } | dag::Node::Directory(links) | dag::Node::Hamt(links) => {
            links.into_iter().map(|l| l.hash).collect()
        }
        _ => Vec::new(),
    })
}

/// Makes sure every block under `root` is in `store`, fetching the missing ones.
pub async fn fetch_dag(
    fetch: Arc<Fetch>,
    store: Arc<dyn BlockStore>,
    root: Cid,
) -> CliResult<Counts> {
    let mut counts = Counts::default();
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut running: JoinSet<CliResult<(Cid, Vec<u8>, bool)>> = JoinSet::new();
    loop {
        while running.len() < PARALLEL
            && let Some(cid) = queue.pop_front()
        {
            let (fetch, store) = (fetch.clone(), store.clone());
            running.spawn(async move {
                let s = store.clone();
                let held = tokio::task::spawn_blocking(move || s.get(&cid))
                    .await
                    .map_err(|e| CliError::new(e.to_string()))?;
                // A held block that no longer verifies is fetched again.
                if let Ok(Some(block)) = held {
                    return Ok((cid, block, true));
                }
                let block = fetch.block(&cid).await?;
                let (s, b) = (store.clone(), block.clone());
                tokio::task::spawn_blocking(move || s.put(&cid, &b))
                    .await
                    .map_err(|e| CliError::new(e.to_string()))?
                    .map_err(|e| CliError::new(e.to_string()))?;
                Ok((cid, block, false))
            });
        }
        let Some(done) = running.join_next().await else {
            return Ok(counts);
        };
        let (cid, block, held) = done.map_err(|e| CliError::new(e.to_string()))??;
        if held {
            counts.held += 1;
        } else {
            counts.fetched += 1;
            counts.bytes += block.len() as u64;
        }
        for child in links(&cid, &block).map_err(|e| CliError::new(e.to_string()))? {
            if seen.len() >= 1 << 24 {
                return Err(CliError::new(format!(
                    "{root}: DAG of more than 16M blocks"
                )));
            }
            if seen.insert(child) {
                queue.push_back(child);
            }
        }
    }
}
