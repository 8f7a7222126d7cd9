//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::{console, devices, events, host, metrics, migrations, networks, snapshots, storage, vms};

#[derive(OpenApi)]
#[openapi(
    info(title = "Vireo API", description = "Manage QEMU/KVM virtual machines. Errors are JSON `ApiError` bodies with a stable `code`."),
    paths(
        vms::list, vms::create, vms::show, vms::delete, vms::start, vms::stop, vms::pause,
        vms::resume, vms::restart, vms::logs, vms::history, console::attach, vms::save, vms::restore,
        super::vnc::attach,
        devices::attach_disk, devices::detach_disk, devices::attach_nic, devices::detach_nic,
        snapshots::list, snapshots::create, snapshots::revert, snapshots::delete,
        storage::list_pools, storage::create_pool, storage::show_pool, storage::delete_pool,
        storage::list_all_volumes, storage::list_volumes, storage::create_volume, storage::import_volume,
        storage::show_volume, storage::delete_volume, storage::clone_volume, storage::resize_volume,
        migrations::migrate, migrations::status, migrations::cancel, migrations::prepare_incoming,
        migrations::finish_incoming, migrations::abort_incoming,
        networks::list, networks::create, networks::show, networks::delete,
        events::list, host::check, host::show, metrics::scrape, document
    ),
    components(schemas(vireo_api::ErrorCode, vireo_api::VmState, vireo_api::CheckStatus)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "vms", description = "Virtual machines"), (name = "storage", description = "Storage pools and volumes"),
        (name = "snapshots", description = "VM snapshots"),
        (name = "networks", description = "Managed virtual networks"),
        (name = "migration", description = "Live migration between hosts"),
        (name = "events", description = "The event log: every state change and operation"),
        (name = "host", description = "The host"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Required on TCP; the Unix socket is guarded by file permissions"))
                    .build(),
            ),
        );
    }
}

#[utoipa::path(operation_id = "get_openapi", get, path = "/v1/openapi.json", tag = "host",
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
