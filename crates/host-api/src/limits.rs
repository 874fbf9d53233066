//! Every size and count limit the host API enforces, in one place.
//!
//! The API socket is reachable by root and the socket's group (mode 0660); these limits keep a
//! buggy or hostile client in that group from exhausting the node's memory or disk, or from
//! growing a rendered file without bound. Each limit is checked where the input enters:
//!
//! * request bodies by the server's body limit (**413**);
//! * transactions by [`crate::datastore::Datastore::patch`] (**429** for too many pending
//!   transactions, **413** for a transaction or the live settings growing too large);
//! * field values and list lengths by the validated types of [`crate::settings`] (**400**
//!   naming the key);
//! * user-data by the boot step (the file is refused before it is parsed);
//! * responses by the client ([`crate::client::Client`]).
//!
//! They are documented in `docs/host.md` ("Limits").

/// Largest request body the server reads (bytes). Larger bodies are refused with 413 before
/// they are buffered.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest user-data file read at first boot (bytes).
pub const MAX_USER_DATA_BYTES: u64 = 1024 * 1024;

/// Most transactions that may be pending at once. The host's own launch transaction is not
/// counted (it is committed at once and never left pending).
pub const MAX_PENDING_TX: usize = 32;

/// Most keys (leaves of the flattened document; a list is one key) in one pending transaction.
pub const MAX_TX_KEYS: usize = 1024;

/// Largest pending transaction, as compact JSON (bytes).
pub const MAX_TX_BYTES: usize = 256 * 1024;

/// Most keys in the live settings (live ⊕ pending is checked before anything is written).
pub const MAX_LIVE_KEYS: usize = 4096;

/// Largest live settings document, as compact JSON (bytes).
pub const MAX_LIVE_BYTES: usize = 1024 * 1024;

/// Most dotted segments in a key given as `key=value` (the deepest real key has 5).
pub const MAX_KEY_SEGMENTS: usize = 16;

/// Largest response body the client buffers (bytes).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Longest URL (`settings.ecs.endpoint`, mirror endpoints, NTP servers, update URLs).
pub const MAX_URL_LEN: usize = 2048;

/// Longest absolute path accepted as an update repository location.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest sysctl value (bytes).
pub const MAX_SYSCTL_VALUE_LEN: usize = 1024;

/// Longest `settings.motd` (bytes).
pub const MAX_MOTD_LEN: usize = 4096;

/// Longest registry user name (bytes).
pub const MAX_USERNAME_LEN: usize = 256;

/// Longest registry password (bytes).
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Longest base64 value (registry `auth`, container `user-data`), bytes of base64 text. It is
/// passed to container runners in an environment variable, which Linux caps at 128 KiB.
pub const MAX_BASE64_LEN: usize = 64 * 1024;

/// Longest container image reference.
pub const MAX_IMAGE_REF_LEN: usize = 512;

/// Longest Go duration string (`container-stop-timeout`).
pub const MAX_DURATION_LEN: usize = 32;

/// Longest `settings.updates.version-lock`.
pub const MAX_VERSION_LEN: usize = 128;

/// Most `settings.dns.name-servers` (glibc's resolver uses only the first 3, `MAXNS`).
pub const MAX_NAME_SERVERS: usize = 3;

/// Most `settings.dns.search-list` domains (the classic resolver limit, `MAXDNSRCH`).
pub const MAX_SEARCH_DOMAINS: usize = 6;

/// Longest `search` line of `resolv.conf`: the domains joined by spaces (classic resolver
/// limit; musl's too).
pub const MAX_SEARCH_LIST_LEN: usize = 256;

/// Most `settings.ntp.time-servers`.
pub const MAX_TIME_SERVERS: usize = 16;

/// Most registry mirror entries, and most credential entries.
pub const MAX_REGISTRY_ENTRIES: usize = 64;

/// Most endpoints of one registry mirror.
pub const MAX_MIRROR_ENDPOINTS: usize = 16;

/// Most `settings.ecs.instance-attributes`.
pub const MAX_INSTANCE_ATTRIBUTES: usize = 64;
