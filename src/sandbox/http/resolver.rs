//! Name resolution for the guest's requests, in the resolver the connection
//! itself uses: addresses the policy refuses are dropped after DNS, so a
//! name cannot be rebound between the check and the connect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::sandbox::addresses::refusal;

/// A refusal by policy; stops the run.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    pub(super) target: String,
    pub(super) reason: String,
}

/// Resolves names for reqwest and drops non-public addresses, recording why.
pub(super) struct PolicyResolver {
    pub(super) allow_private: bool,
    pub(super) refused: Arc<Mutex<Option<Refusal>>>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let refused = self.refused.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let mut public = Vec::new();
            let mut first_refusal = None;
            for a in addrs {
                match refusal(a.ip()) {
                    None => public.push(a),
                    Some(reason) if first_refusal.is_none() => {
                        first_refusal = Some(Refusal {
                            target: format!("{host} ({})", a.ip()),
                            reason: format!("it resolves to {reason}"),
                        })
                    }
                    Some(_) => {}
                }
            }
            if public.is_empty() {
                if let Some(r) = first_refusal {
                    let message = format!("{}: {}", r.target, r.reason);
                    *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    return Err(message.into());
                }
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The runtime HTTP work runs on; guest threads block on it.
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandstack-http")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the HTTP runtime: {e}"))
    })
}
