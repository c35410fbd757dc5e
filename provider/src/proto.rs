//! The tonic `tfplugin6.Provider` service: decodes each request, runs the framework and the
//! provider's resources, and encodes the response. User-facing problems become diagnostics in the
//! response; a gRPC error status only ever means a bug.

use crate::convert::{from_proto, to_proto};
use crate::framework::server::{self, DataSource, Resource};
use crate::framework::{AttrPath, Diagnostics, Schema};
use crate::tfplugin6 as pb;
use crate::tfplugin6::provider_server::Provider as ProviderService;
use crate::value::{Type, Value};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{Notify, RwLock};
use tonic::{Request, Response, Status};

/// A provider: its configuration schema, how it is configured, its resources and data sources.
#[async_trait]
pub trait ProviderDef: Send + Sync + 'static {
    /// What configuring produces and every resource receives.
    type Data: Send + Sync + 'static;
    /// The provider block's schema.
    fn schema(&self) -> Schema;
    /// Checks across provider attributes.
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Configures the provider from its block.
    async fn configure(&self, config: &Value, diags: &mut Diagnostics) -> Option<Self::Data>;
    /// The resource types.
    fn resources(&self) -> Vec<Arc<dyn Resource<Self::Data>>>;
    /// The data source types.
    fn data_sources(&self) -> Vec<Arc<dyn DataSource<Self::Data>>>;
}

struct Entry<T: ?Sized> {
    imp: Arc<T>,
    schema: Schema,
    ty: Type,
}

/// Serves a [`ProviderDef`] as `tfplugin6.Provider`.
pub struct ProviderServer<P: ProviderDef> {
    def: Arc<P>,
    schema: Schema,
    resources: BTreeMap<String, Entry<dyn Resource<P::Data>>>,
    data_sources: BTreeMap<String, Entry<dyn DataSource<P::Data>>>,
    data: RwLock<Option<Arc<P::Data>>>,
    stop: Arc<Notify>,
    stopping: std::sync::atomic::AtomicBool,
}

impl<P: ProviderDef> std::fmt::Debug for ProviderServer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderServer")
            .field("resources", &self.resources.keys())
            .finish()
    }
}

impl<P: ProviderDef> ProviderServer<P> {
    /// Builds the server; `stop` is notified when Terraform calls StopProvider.
    pub fn new(def: P, stop: Arc<Notify>) -> Self {
        let resources = def
            .resources()
            .into_iter()
            .map(|r| {
                let schema = r.schema();
                let ty = schema.block.value_type();
                (r.type_name().to_string(), Entry { imp: r, schema, ty })
            })
            .collect();
        let data_sources = def
            .data_sources()
            .into_iter()
            .map(|r| {
                let schema = r.schema();
                let ty = schema.block.value_type();
                (r.type_name().to_string(), Entry { imp: r, schema, ty })
            })
            .collect();
        ProviderServer {
            schema: def.schema(),
            def: Arc::new(def),
            resources,
            data_sources,
            data: RwLock::new(None),
            stop,
            stopping: Default::default(),
        }
    }

    fn resource(&self, name: &str) -> Result<&Entry<dyn Resource<P::Data>>, Status> {
        self.resources
            .get(name)
            .ok_or_else(|| Status::not_found(format!("unknown resource type {name}")))
    }

    fn data_source(&self, name: &str) -> Result<&Entry<dyn DataSource<P::Data>>, Status> {
        self.data_sources
            .get(name)
            .ok_or_else(|| Status::not_found(format!("unknown data source {name}")))
    }

    async fn configured(&self, diags: &mut Diagnostics) -> Option<Arc<P::Data>> {
        let d = self.data.read().await.clone();
        if d.is_none() {
            diags.error(
                "Provider not configured",
                "the provider was used before ConfigureProvider succeeded",
            );
        }
        d
    }
}

fn decode(
    dv: Option<&pb::DynamicValue>,
    ty: &Type,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Value> {
    match from_proto::dynamic_value(dv, ty) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error("Invalid value from Terraform", format!("{what}: {e}"));
            None
        }
    }
}

fn encode(v: &Value, ty: &Type) -> Option<pb::DynamicValue> {
    Some(to_proto::dynamic_value(v, ty))
}

type R<T> = Result<Response<T>, Status>;

#[async_trait]
impl<P: ProviderDef> ProviderService for ProviderServer<P> {
    async fn get_provider_schema(
        &self,
        _: Request<pb::get_provider_schema::Request>,
    ) -> R<pb::get_provider_schema::Response> {
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(to_proto::schema(&self.schema)),
            resource_schemas: self
                .resources
                .iter()
                .map(|(k, e)| (k.clone(), to_proto::schema(&e.schema)))
                .collect(),
            data_source_schemas: self
                .data_sources
                .iter()
                .map(|(k, e)| (k.clone(), to_proto::schema(&e.schema)))
                .collect(),
            diagnostics: vec![],
            provider_meta: None,
        }))
    }

    async fn validate_provider_config(
        &self,
        req: Request<pb::validate_provider_config::Request>,
    ) -> R<pb::validate_provider_config::Response> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        if let Some(cfg) = decode(
            req.config.as_ref(),
            &self.schema.block.value_type(),
            "provider configuration",
            &mut diags,
        ) {
            server::validate_block(&self.schema.block, &cfg, &AttrPath::default(), &mut diags);
            self.def.validate(&cfg, &mut diags);
        }
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn validate_resource_config(
        &self,
        req: Request<pb::validate_resource_config::Request>,
    ) -> R<pb::validate_resource_config::Response> {
        let req = req.into_inner();
        let e = self.resource(&req.type_name)?;
        let mut diags = Diagnostics::default();
        if let Some(cfg) = decode(
            req.config.as_ref(),
            &e.ty,
            "resource configuration",
            &mut diags,
        ) {
            server::validate_block(&e.schema.block, &cfg, &AttrPath::default(), &mut diags);
            e.imp.validate(&cfg, &mut diags);
        }
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        req: Request<pb::validate_data_resource_config::Request>,
    ) -> R<pb::validate_data_resource_config::Response> {
        let req = req.into_inner();
        let e = self.data_source(&req.type_name)?;
        let mut diags = Diagnostics::default();
        if let Some(cfg) = decode(
            req.config.as_ref(),
            &e.ty,
            "data source configuration",
            &mut diags,
        ) {
            server::validate_block(&e.schema.block, &cfg, &AttrPath::default(), &mut diags);
            e.imp.validate(&cfg, &mut diags);
        }
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        req: Request<pb::upgrade_resource_state::Request>,
    ) -> R<pb::upgrade_resource_state::Response> {
        let req = req.into_inner();
        let e = self.resource(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let raw = req.raw_state.unwrap_or_default();
        let upgraded = if raw.json.is_empty() {
            diags.error(
                "Unsupported state format",
                format!(
                    "{} state is in the legacy flatmap format, which this provider never wrote",
                    req.type_name
                ),
            );
            None
        } else {
            server::upgrade_state(e.imp.as_ref(), req.version, &raw.json, &mut diags)
        };
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state: upgraded.and_then(|v| encode(&v, &e.ty)),
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn configure_provider(
        &self,
        req: Request<pb::configure_provider::Request>,
    ) -> R<pb::configure_provider::Response> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        if let Some(cfg) = decode(
            req.config.as_ref(),
            &self.schema.block.value_type(),
            "provider configuration",
            &mut diags,
        ) {
            if let Some(data) = self.def.configure(&cfg, &mut diags).await {
                *self.data.write().await = Some(Arc::new(data));
            }
        }
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn read_resource(
        &self,
        req: Request<pb::read_resource::Request>,
    ) -> R<pb::read_resource::Response> {
        let req = req.into_inner();
        let e = self.resource(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let mut new_state = req.current_state.clone();
        if let (Some(data), Some(state)) = (
            self.configured(&mut diags).await,
            decode(
                req.current_state.as_ref(),
                &e.ty,
                "current state",
                &mut diags,
            ),
        ) {
            if !state.is_null() {
                let read = e.imp.read(&data, &state, &mut diags).await;
                new_state = encode(read.as_ref().unwrap_or(&Value::Null), &e.ty);
            }
        }
        Ok(Response::new(pb::read_resource::Response {
            new_state,
            diagnostics: to_proto::diagnostics(&diags),
            private: req.private,
        }))
    }

    async fn plan_resource_change(
        &self,
        req: Request<pb::plan_resource_change::Request>,
    ) -> R<pb::plan_resource_change::Response> {
        let req = req.into_inner();
        let e = self.resource(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let mut resp = pb::plan_resource_change::Response {
            planned_state: req.proposed_new_state.clone(),
            requires_replace: vec![],
            planned_private: req.prior_private.clone(),
            diagnostics: vec![],
        };
        let (Some(prior), Some(proposed), Some(config)) = (
            decode(req.prior_state.as_ref(), &e.ty, "prior state", &mut diags),
            decode(
                req.proposed_new_state.as_ref(),
                &e.ty,
                "proposed new state",
                &mut diags,
            ),
            decode(req.config.as_ref(), &e.ty, "configuration", &mut diags),
        ) else {
            resp.diagnostics = to_proto::diagnostics(&diags);
            return Ok(Response::new(resp));
        };
        if proposed.is_null() {
            // Destroy: nothing to plan.
            return Ok(Response::new(resp));
        }
        let prior_ref = (!prior.is_null()).then_some(&prior);
        let (mut plan, replace) =
            server::plan_block(&e.schema.block, prior_ref, &proposed, &config);
        if let Some(data) = self.configured(&mut diags).await {
            e.imp
                .modify_plan(&data, prior_ref, &mut plan, &mut diags)
                .await;
        }
        resp.planned_state = encode(&plan, &e.ty);
        resp.requires_replace = replace.iter().map(to_proto::attribute_path).collect();
        resp.diagnostics = to_proto::diagnostics(&diags);
        Ok(Response::new(resp))
    }

    async fn apply_resource_change(
        &self,
        req: Request<pb::apply_resource_change::Request>,
    ) -> R<pb::apply_resource_change::Response> {
        let req = req.into_inner();
        let e = self.resource(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let mut resp = pb::apply_resource_change::Response {
            new_state: req.prior_state.clone(),
            private: req.planned_private.clone(),
            diagnostics: vec![],
        };
        let (Some(data), Some(prior), Some(planned)) = (
            self.configured(&mut diags).await,
            decode(req.prior_state.as_ref(), &e.ty, "prior state", &mut diags),
            decode(
                req.planned_state.as_ref(),
                &e.ty,
                "planned state",
                &mut diags,
            ),
        ) else {
            resp.diagnostics = to_proto::diagnostics(&diags);
            return Ok(Response::new(resp));
        };
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            diags.error(
                "Provider stopping",
                "terraform asked the provider to stop; this change was not started",
            );
            resp.diagnostics = to_proto::diagnostics(&diags);
            return Ok(Response::new(resp));
        }
        let new_state = match (prior.is_null(), planned.is_null()) {
            (true, false) => Some(e.imp.create(&data, &planned, &mut diags).await),
            (false, false) => Some(e.imp.update(&data, &prior, &planned, &mut diags).await),
            (false, true) => {
                e.imp.delete(&data, &prior, &mut diags).await;
                // On failure the resource stays in state.
                Some(if diags.has_error() {
                    prior.clone()
                } else {
                    Value::Null
                })
            }
            (true, true) => None,
        };
        if let Some(s) = new_state {
            resp.new_state = encode(&s, &e.ty);
        }
        resp.diagnostics = to_proto::diagnostics(&diags);
        Ok(Response::new(resp))
    }

    async fn import_resource_state(
        &self,
        req: Request<pb::import_resource_state::Request>,
    ) -> R<pb::import_resource_state::Response> {
        let req = req.into_inner();
        let e = self.resource(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let mut imported = vec![];
        if let Some(data) = self.configured(&mut diags).await {
            if let Some(state) = e.imp.import(&data, &req.id, &mut diags).await {
                imported.push(pb::import_resource_state::ImportedResource {
                    type_name: req.type_name.clone(),
                    state: encode(&state, &e.ty),
                    private: vec![],
                });
            }
        }
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn read_data_source(
        &self,
        req: Request<pb::read_data_source::Request>,
    ) -> R<pb::read_data_source::Response> {
        let req = req.into_inner();
        let e = self.data_source(&req.type_name)?;
        let mut diags = Diagnostics::default();
        let mut state = None;
        if let (Some(data), Some(cfg)) = (
            self.configured(&mut diags).await,
            decode(req.config.as_ref(), &e.ty, "configuration", &mut diags),
        ) {
            let v = e.imp.read(&data, &cfg, &mut diags).await;
            state = encode(&v, &e.ty);
        }
        Ok(Response::new(pb::read_data_source::Response {
            state,
            diagnostics: to_proto::diagnostics(&diags),
        }))
    }

    async fn stop_provider(
        &self,
        _: Request<pb::stop_provider::Request>,
    ) -> R<pb::stop_provider::Response> {
        // Changes already running finish (each is idempotent and leaves state consistent); no new
        // change starts after this.
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.notify_waiters();
        Ok(Response::new(pb::stop_provider::Response {
            error: String::new(),
        }))
    }
}
