//! [`StoreLocation`]: which backend holds the state, as written on a command line
//! (`redb:PATH` or `etcd://HOST:PORT[,HOST:PORT…]`), and opening it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Election, EtcdOptions, EtcdStore, RedbStore, Store, StoreError};

/// Where the control plane's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store: one redb file (`redb:PATH`).
    Redb(PathBuf),
    /// An etcd v3 cluster (`etcd://HOST:PORT[,HOST:PORT…]`): its client endpoints, each
    /// `HOST:PORT`, in the order given.
    Etcd(Vec<String>),
}

const USAGE: &str = "expected redb:PATH or etcd://HOST:PORT[,HOST:PORT…]";

impl std::str::FromStr for StoreLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreLocation, String> {
        if let Some(path) = s.strip_prefix("redb:") {
            if path.is_empty() {
                return Err(format!("{USAGE}, got {s:?} (no path)"));
            }
            return Ok(StoreLocation::Redb(PathBuf::from(path)));
        }
        let Some(list) = s.strip_prefix("etcd://") else {
            return Err(format!("{USAGE}, got {s:?}"));
        };
        let mut endpoints = Vec::new();
        for endpoint in list.split(',') {
            let valid = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.contains(['/', '@', '?', '#', ' '])
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !valid {
                return Err(format!(
                    "{USAGE}, got {s:?} ({endpoint:?} is not HOST:PORT)"
                ));
            }
            endpoints.push(endpoint.to_owned());
        }
        Ok(StoreLocation::Etcd(endpoints))
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Redb(path) => write!(f, "redb:{}", path.display()),
            StoreLocation::Etcd(endpoints) => write!(f, "etcd://{}", endpoints.join(",")),
        }
    }
}

impl StoreLocation {
    /// Opens the store (a redb file is created if missing, as is its directory), with
    /// [`EtcdOptions::default`] for etcd.
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            StoreLocation::Redb(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Transaction(format!(
                            "cannot create the store's directory {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                Ok(Arc::new(RedbStore::open(path)?))
            }
            StoreLocation::Etcd(endpoints) => Ok(Arc::new(EtcdStore::connect(
                endpoints,
                EtcdOptions::default(),
            )?)),
        }
    }

    /// [`StoreLocation::open`] for a server named `name` (unique among the servers of one
    /// store): a store several servers share (etcd) comes with this server's part in
    /// electing the one whose controllers run; the embedded store has no election (its
    /// one server leads).
    pub fn open_for_server(
        &self,
        name: &str,
    ) -> Result<(Arc<dyn Store>, Option<Election>), StoreError> {
        match self {
            StoreLocation::Redb(_) => Ok((self.open()?, None)),
            StoreLocation::Etcd(endpoints) => {
                let store = EtcdStore::connect(endpoints, EtcdOptions::default())?;
                let election = Election::start(&store, name);
                Ok((Arc::new(store), Some(election)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StoreLocation;

    #[test]
    fn parses_both_backends_and_names_what_is_wrong() {
        assert_eq!(
            "redb:/var/lib/x/state.redb".parse::<StoreLocation>(),
            Ok(StoreLocation::Redb("/var/lib/x/state.redb".into()))
        );
        assert_eq!(
            "etcd://10.0.0.1:2379,etcd-2.local:2379".parse::<StoreLocation>(),
            Ok(StoreLocation::Etcd(vec![
                "10.0.0.1:2379".into(),
                "etcd-2.local:2379".into()
            ]))
        );
        let loc: StoreLocation = "etcd://[::1]:2379".parse().unwrap();
        assert_eq!(loc.to_string(), "etcd://[::1]:2379");
        for bad in [
            "",
            "redb:",
            "postgres://x:1",
            "etcd://",
            "etcd://host",
            "etcd://host:0",
            "etcd://host:99999",
            "etcd://a:1,,b:2",
            "etcd://http://a:1",
        ] {
            let err = bad.parse::<StoreLocation>().unwrap_err();
            assert!(
                err.starts_with("expected redb:PATH or etcd://") && !err.contains('\n'),
                "{bad:?}: {err}"
            );
        }
    }
}
