//! `/v1/networks`: managed virtual networks.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use vireo_api::{ApiError, Lease, Network, NetworkSpec};

use super::{AppState, json_body};
use crate::error::ServerError;
use crate::manager::{NetworkStatus, lease_expiry};

type ApiResult<T> = Result<T, ServerError>;

fn network_to_wire(status: NetworkStatus) -> Network {
    let subnet: Option<vireo_net::Ipv4Subnet> = status.record.subnet.as_deref().and_then(|s| s.parse().ok());
    let range = subnet.map(|s| s.dhcp_range());
    let leases = status
        .leases
        .iter()
        .map(|lease| Lease {
            mac: lease.mac.to_string(),
            ip: lease.ip.to_string(),
            vm: None,
            hostname: lease.hostname.clone(),
            expires_at: lease_expiry(lease),
        })
        .collect();
    Network {
        name: status.record.name,
        mode: status.record.mode,
        bridge: status.record.bridge,
        gateway: subnet.map(|s| s.gateway().to_string()),
        dhcp_start: range.map(|r| r.start.to_string()),
        dhcp_end: range.map(|r| r.end.to_string()),
        subnet: status.record.subnet,
        vlan: status.record.vlan,
        leases,
        used_by: status.used_by,
    }
}

#[utoipa::path(operation_id = "list_networks", get, path = "/v1/networks", tag = "networks",
    responses((status = 200, body = [Network])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Network>>> {
    let networks = state.manager.list_networks().await?;
    let macs = state.manager.vm_macs().await?;
    Ok(Json(networks.into_iter().map(network_to_wire).map(|n| with_lease_owners(n, &macs)).collect()))
}

#[utoipa::path(operation_id = "create_network", post, path = "/v1/networks", tag = "networks", request_body = NetworkSpec,
    responses((status = 201, description = "Bridge, DHCP and (nat) masquerading are up", body = Network),
        (status = 409, body = ApiError), (status = 422, description = "Bad or overlapping subnet, unknown bridge, bad VLAN", body = ApiError)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Network>)> {
    let spec: NetworkSpec = json_body(body)?;
    Ok((StatusCode::CREATED, Json(network_to_wire(state.manager.create_network(spec).await?))))
}

#[utoipa::path(operation_id = "get_network", get, path = "/v1/networks/{network}", tag = "networks",
    params(("network" = String, Path)), responses((status = 200, body = Network), (status = 404, body = ApiError)))]
pub async fn show(State(state): State<AppState>, Path(network): Path<String>) -> ApiResult<Json<Network>> {
    let status = state.manager.get_network(&network).await?;
    let macs = state.manager.vm_macs().await?;
    Ok(Json(with_lease_owners(network_to_wire(status), &macs)))
}

#[utoipa::path(operation_id = "delete_network", delete, path = "/v1/networks/{network}", tag = "networks",
    params(("network" = String, Path)),
    responses((status = 204, description = "Bridge, dnsmasq and nftables table removed"), (status = 404, body = ApiError),
        (status = 409, description = "NICs use it", body = ApiError)))]
pub async fn delete(State(state): State<AppState>, Path(network): Path<String>) -> ApiResult<StatusCode> {
    state.manager.delete_network(&network).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Names the VM behind each lease.
fn with_lease_owners(mut network: Network, macs: &std::collections::HashMap<String, String>) -> Network {
    for lease in &mut network.leases {
        lease.vm = macs.get(&lease.mac).cloned();
    }
    network
}
