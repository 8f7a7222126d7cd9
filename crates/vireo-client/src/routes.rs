//! The paths of the API's routes, with every name percent-encoded so that no name can reach another route.

use vireo_api::API_PREFIX;

use crate::error::ClientError;

/// What a path segment names; it decides which characters may pass unencoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    Vm,
    Pool,
    Volume,
    Snapshot,
    Network,
    Mac,
}

impl Name {
    fn label(self) -> &'static str {
        match self {
            Name::Vm => "VM",
            Name::Pool => "pool",
            Name::Volume => "volume",
            Name::Snapshot => "snapshot",
            Name::Network => "network",
            Name::Mac => "MAC",
        }
    }
}

/// `/v1/vms/{name}{suffix}`
pub(crate) fn vm(name: &str, suffix: &str) -> Result<String, ClientError> {
    Ok(format!("{API_PREFIX}/vms/{}{suffix}", segment(Name::Vm, name)?))
}

/// A VM name as one path segment.
pub(crate) fn vm_segment(name: &str) -> Result<String, ClientError> {
    segment(Name::Vm, name).map(|s| s.to_string())
}

/// `/v1/vms/{vm}/snapshots/{snapshot}{suffix}`
pub(crate) fn snapshot(vm_name: &str, snapshot: &str, suffix: &str) -> Result<String, ClientError> {
    vm(vm_name, &format!("/snapshots/{}{suffix}", segment(Name::Snapshot, snapshot)?))
}

/// `/v1/vms/{vm}/disks/{pool}/{volume}`
pub(crate) fn vm_disk(vm_name: &str, pool: &str, volume: &str) -> Result<String, ClientError> {
    vm(vm_name, &format!("/disks/{}/{}", segment(Name::Pool, pool)?, segment(Name::Volume, volume)?))
}

/// `/v1/vms/{vm}/nics/{mac}`
pub(crate) fn vm_nic(vm_name: &str, mac: &str) -> Result<String, ClientError> {
    vm(vm_name, &format!("/nics/{}", segment(Name::Mac, mac)?))
}

/// `/v1/pools/{pool}{suffix}`
pub(crate) fn pool(name: &str, suffix: &str) -> Result<String, ClientError> {
    Ok(format!("{API_PREFIX}/pools/{}{suffix}", segment(Name::Pool, name)?))
}

/// `/v1/pools/{pool}/volumes/{volume}{suffix}`
pub(crate) fn volume(pool_name: &str, volume: &str, suffix: &str) -> Result<String, ClientError> {
    pool(pool_name, &format!("/volumes/{}{suffix}", segment(Name::Volume, volume)?))
}

/// `/v1/networks/{network}{suffix}`
pub(crate) fn network(name: &str, suffix: &str) -> Result<String, ClientError> {
    Ok(format!("{API_PREFIX}/networks/{}{suffix}", segment(Name::Network, name)?))
}

/// `/v1/events` with the query of a list (or, without `limit`, of a stream).
pub(crate) fn events(after: Option<u64>, vm: Option<&str>, limit: Option<u32>) -> Result<String, ClientError> {
    let mut query = Vec::new();
    if let Some(after) = after {
        query.push(format!("after={after}"));
    }
    if let Some(vm) = vm {
        query.push(format!("vm={}", segment(Name::Vm, vm)?));
    }
    if let Some(limit) = limit {
        query.push(format!("limit={limit}"));
    }
    let separator = if query.is_empty() { "" } else { "?" };
    Ok(format!("{API_PREFIX}/events{separator}{}", query.join("&")))
}

/// `value` as one path segment. Names keep `[A-Za-z0-9_-]`, volumes also `.` (but never a leading one, so
/// that `.` and `..` stay names rather than steps); every other byte is percent-encoded.
fn segment(kind: Name, value: &str) -> Result<String, ClientError> {
    if value.is_empty() {
        return Err(ClientError::EmptyName { what: kind.label() });
    }
    let mut encoded = String::with_capacity(value.len());
    for (index, byte) in value.bytes().enumerate() {
        let dot_allowed = kind == Name::Volume && index > 0;
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && dot_allowed) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_the_route() {
        assert_eq!(vm("web-1_a", "/start").unwrap(), "/v1/vms/web-1_a/start");
        assert_eq!(vm("../host/check", "").unwrap(), "/v1/vms/%2E%2E%2Fhost%2Fcheck");
        assert_eq!(vm("a?b#c d", "/logs").unwrap(), "/v1/vms/a%3Fb%23c%20d/logs");
        assert_eq!(vm("é", "").unwrap(), "/v1/vms/%C3%A9");
        assert!(matches!(vm("", "/start"), Err(ClientError::EmptyName { what: "VM" })));
    }

    #[test]
    fn volumes_keep_inner_dots_only() {
        assert_eq!(volume("default", "root.qcow2", "").unwrap(), "/v1/pools/default/volumes/root.qcow2");
        assert_eq!(volume("default", "..", "/clone").unwrap(), "/v1/pools/default/volumes/%2E./clone");
        assert_eq!(volume("default", ".", "").unwrap(), "/v1/pools/default/volumes/%2E");
        assert_eq!(volume("..", "a/../b", "").unwrap(), "/v1/pools/%2E%2E/volumes/a%2F..%2Fb");
        assert_eq!(pool("a.b", "").unwrap(), "/v1/pools/a%2Eb");
        assert!(matches!(volume("p", "", ""), Err(ClientError::EmptyName { what: "volume" })));
        assert!(matches!(pool("", "/volumes"), Err(ClientError::EmptyName { what: "pool" })));
    }

    #[test]
    fn nested_routes_encode_each_name() {
        assert_eq!(
            snapshot("web1", "before upgrade", "/revert").unwrap(),
            "/v1/vms/web1/snapshots/before%20upgrade/revert"
        );
        assert_eq!(snapshot("web1", "..", "").unwrap(), "/v1/vms/web1/snapshots/%2E%2E");
        assert_eq!(vm_disk("web1", "default", "data.img").unwrap(), "/v1/vms/web1/disks/default/data.img");
        assert_eq!(vm_disk("web1", "p/q", "..").unwrap(), "/v1/vms/web1/disks/p%2Fq/%2E.");
        assert!(matches!(snapshot("web1", "", ""), Err(ClientError::EmptyName { what: "snapshot" })));
    }

    #[test]
    fn event_queries_encode_the_vm() {
        assert_eq!(events(None, None, None).unwrap(), "/v1/events");
        assert_eq!(
            events(Some(7), Some("web 1&x=2"), Some(5)).unwrap(),
            "/v1/events?after=7&vm=web%201%26x%3D2&limit=5"
        );
        assert_eq!(events(None, Some("web1"), None).unwrap(), "/v1/events?vm=web1");
        assert!(matches!(events(None, Some(""), None), Err(ClientError::EmptyName { what: "VM" })));
    }

    #[test]
    fn networks_encode_like_vms() {
        assert_eq!(network("lan-1_a", "").unwrap(), "/v1/networks/lan-1_a");
        assert_eq!(network("../vms", "").unwrap(), "/v1/networks/%2E%2E%2Fvms");
        assert_eq!(network("a.b", "").unwrap(), "/v1/networks/a%2Eb");
        assert!(matches!(network("", ""), Err(ClientError::EmptyName { what: "network" })));
    }
}
