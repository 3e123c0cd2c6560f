//! A `profiles` pipeline: OTLP profiles (the development protocol,
//! `opentelemetry.proto.collector.profiles.v1development`) pass from the otlp receiver to the
//! otlp exporters unchanged. No profiler that sends OTLP runs here, so the client and the
//! final backend are the tonic client and server generated from the published proto (the
//! `opentelemetry-proto` crate); between them are two ferrotels: gRPC and OTLP/HTTP into the
//! first, which exports over OTLP/HTTP to the second, which exports over gRPC to the backend.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collector, free_port, wait_until};
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
    profiles_service_client::ProfilesServiceClient,
    profiles_service_server::{ProfilesService, ProfilesServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

#[derive(Clone, Default)]
struct Backend(Arc<Mutex<Vec<ExportProfilesServiceRequest>>>);

#[tonic::async_trait]
impl ProfilesService for Backend {
    async fn export(
        &self,
        req: tonic::Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(
            ExportProfilesServiceResponse::default(),
        ))
    }
}

/// A CPU profile of `service` with two samples whose stacks point into the dictionary.
fn request(service: &str) -> ExportProfilesServiceRequest {
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    sample_type: Some(ValueType {
                        type_strindex: 1,
                        unit_strindex: 2,
                    }),
                    samples: vec![
                        Sample {
                            stack_index: 0,
                            values: vec![10],
                            ..Default::default()
                        },
                        Sample {
                            stack_index: 0,
                            values: vec![5],
                            ..Default::default()
                        },
                    ],
                    time_unix_nano: 1_700_000_000_000_000_000,
                    duration_nano: 1_000_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(ProfilesDictionary {
            string_table: vec!["".into(), "cpu".into(), "nanoseconds".into(), "main".into()],
            function_table: vec![Function {
                name_strindex: 3,
                ..Default::default()
            }],
            location_table: vec![Location::default()],
            stack_table: vec![Stack {
                location_indices: vec![0],
            }],
            ..Default::default()
        }),
    }
}

#[test]
fn profiles_pass_from_the_otlp_receiver_to_the_otlp_exporters() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = Backend::default();
    let bport = free_port();
    {
        let b = backend.clone();
        rt.spawn(async move {
            tonic::transport::Server::builder()
                // The exporters gzip by default, as the Collector's do.
                .add_service(
                    ProfilesServiceServer::new(b)
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .serve(([127, 0, 0, 1], bport).into())
                .await
                .unwrap();
        });
    }
    let (b_http, b_health, b_metrics) = (free_port(), free_port(), free_port());
    let _second = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:{b_http}" }} }} }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{bport}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{b_metrics}" }} }}
  pipelines:
    profiles: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#
        ),
        &[],
        Some(b_health),
        Some(b_metrics),
    );
    let (a_grpc, a_http, a_health, a_metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let _first = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{a_grpc}" }}
      http: {{ endpoint: "127.0.0.1:{a_http}" }}
exporters:
  otlphttp: {{ endpoint: "http://127.0.0.1:{b_http}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{a_health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{a_metrics}" }} }}
  pipelines:
    profiles: {{ receivers: [otlp], exporters: [otlphttp] }}
"#
        ),
        &[],
        Some(a_health),
        Some(a_metrics),
    );
    let sent_grpc = request("checkout");
    let sent_http = request("cart");
    let mut sent_json = request("json");
    sent_json.resource_profiles[0].scope_profiles[0].profiles[0].profile_id = vec![0xab; 16];
    rt.block_on(async {
        let mut c = ProfilesServiceClient::connect(format!("http://127.0.0.1:{a_grpc}"))
            .await
            .unwrap();
        c.export(sent_grpc.clone()).await.unwrap();
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{a_http}/v1development/profiles"))
            .header("content-type", "application/x-protobuf")
            .body(sent_http.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        ExportProfilesServiceResponse::decode(body).expect("a profiles response");
        // OTLP/JSON, as opentelemetry-proto's serde writes it (ids in hex), answered in JSON.
        // That serde writes the bytes field `originalPayload` as a number array, which is not
        // the protobuf JSON mapping (base64): the empty one is left out, as the mapping allows.
        let mut json = serde_json::to_value(&sent_json).unwrap();
        json["resourceProfiles"][0]["scopeProfiles"][0]["profiles"][0]
            .as_object_mut()
            .unwrap()
            .remove("originalPayload");
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{a_http}/v1development/profiles"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&json).unwrap())
            .send()
            .await
            .unwrap();
        let st = resp.status();
        let ct = resp.headers()["content-type"].clone();
        assert_eq!(st, 200, "{}", resp.text().await.unwrap());
        assert_eq!(ct, "application/json", "answered in the request's encoding");
        // A malformed one names where it breaks, and affects nothing else.
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{a_http}/v1development/profiles"))
            .header("content-type", "application/json")
            .body(
                r#"{"resourceProfiles":[{"scopeProfiles":[{"profiles":[{"profileId":"xyz"}]}]}]}"#,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.text().await.unwrap().contains("profileId"));
    });
    wait_until(
        "the three requests at the backend",
        Duration::from_secs(20),
        || backend.0.lock().unwrap().len() == 3,
    );
    let mut got = backend.0.lock().unwrap().clone();
    let name = |r: &ExportProfilesServiceRequest| {
        format!(
            "{:?}",
            r.resource_profiles[0].resource.as_ref().unwrap().attributes[0].value
        )
    };
    got.sort_by_key(name);
    let mut want = vec![sent_grpc, sent_http, sent_json];
    want.sort_by_key(name);
    assert_eq!(
        got, want,
        "each request arrives whole, its dictionary with it"
    );
}

/// Components that do not carry profiles are refused by name in a profiles pipeline.
#[test]
fn a_profiles_pipeline_refuses_components_without_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "receivers:\n  otlp: {protocols: {grpc: {}}}\nprocessors:\n  batch: {}\nexporters:\n  otlp: {endpoint: 'b:4317'}\nservice:\n  pipelines:\n    profiles: {receivers: [otlp], processors: [batch], exporters: [otlp]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("`batch` does not support profiles"), "{err}");
}
