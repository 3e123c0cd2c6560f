//! The registry: every component type ferrotel has, each declared by its own module
//! (`FACTORY`). Adding a component means adding its line here; the contracts in
//! [`crate::component`] know none of them.

use crate::component::{Factory, Kind};

/// Every component type, receivers first, in the order `ferrotel components` lists them.
pub static FACTORIES: &[Factory] = &[
    crate::receivers::otlp::FACTORY,
    crate::receivers::filelog::FACTORY,
    crate::receivers::syslog::FACTORY,
    crate::receivers::prometheus::FACTORY,
    crate::receivers::hostmetrics::FACTORY,
    crate::receivers::kubeletstats::FACTORY,
    crate::receivers::k8sobjects::FACTORY,
    crate::receivers::k8s_events::FACTORY,
    crate::receivers::k8s_cluster::FACTORY,
    crate::receivers::zipkin::FACTORY,
    crate::receivers::jaeger::FACTORY,
    crate::receivers::fluentforward::FACTORY,
    crate::receivers::journald::FACTORY,
    crate::receivers::nop::FACTORY,
    crate::receivers::otlpjsonfile::FACTORY,
    crate::processors::batch::FACTORY,
    crate::processors::memory_limiter::FACTORY,
    crate::processors::filter::FACTORY,
    crate::processors::attributes::FACTORY,
    crate::processors::resource::FACTORY,
    crate::processors::resourcedetection::FACTORY,
    crate::processors::cumulativetodelta::FACTORY,
    crate::processors::deltatocumulative::FACTORY,
    crate::processors::probabilistic_sampler::FACTORY,
    crate::processors::tail_sampling::FACTORY,
    crate::processors::k8sattributes::FACTORY,
    crate::processors::transform::FACTORY,
    crate::processors::metricstransform::FACTORY,
    crate::processors::groupbyattrs::FACTORY,
    crate::processors::groupbytrace::FACTORY,
    crate::processors::redaction::FACTORY,
    crate::exporters::otlp_grpc::FACTORY,
    crate::exporters::otlp_http::FACTORY,
    crate::exporters::debug::FACTORY,
    crate::exporters::file::FACTORY,
    crate::exporters::jaeger::FACTORY,
    crate::exporters::loki::FACTORY,
    crate::exporters::load_balancing::FACTORY,
    crate::exporters::prometheus::FACTORY,
    crate::exporters::prometheus_remote_write::FACTORY,
    crate::exporters::zipkin::FACTORY,
    crate::exporters::nop::FACTORY,
    crate::extensions::basicauth::FACTORY,
    crate::extensions::bearertokenauth::FACTORY,
    crate::extensions::file_storage::FACTORY,
    crate::extensions::headers_setter::FACTORY,
    crate::extensions::k8s_leader_elector::FACTORY,
    crate::extensions::health_check::FACTORY,
    crate::extensions::healthcheckv2::FACTORY,
    crate::extensions::oauth2client::FACTORY,
    crate::extensions::oidc::FACTORY,
    crate::extensions::zpages::FACTORY,
    crate::extensions::pprof::FACTORY,
    crate::extensions::tap::FACTORY,
    crate::connectors::forward::FACTORY,
    crate::connectors::count::FACTORY,
    crate::connectors::routing::FACTORY,
    crate::connectors::otlpjson::FACTORY,
    crate::connectors::spanmetrics::FACTORY,
];

/// Finds the factory of a component type by its name, an alias or a deprecated name.
pub fn factory(kind: Kind, type_name: &str) -> Option<&'static Factory> {
    find_in(FACTORIES, kind, type_name)
}

/// Looks a component type up in a given table (tests validate against tables of their own).
pub fn find_in<'a>(table: &'a [Factory], kind: Kind, type_name: &str) -> Option<&'a Factory> {
    table
        .iter()
        .find(|f| f.kind == kind && f.names().any(|n| n == type_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factories_are_found_by_name_and_alias_and_names_are_unique() {
        assert_eq!(factory(Kind::Exporter, "otlp").unwrap().name, "otlp_grpc");
        assert_eq!(
            factory(Kind::Exporter, "otlphttp").unwrap().name,
            "otlp_http"
        );
        assert_eq!(factory(Kind::Exporter, "logging").unwrap().name, "debug");
        assert_eq!(
            factory(Kind::Processor, "k8s_attributes").unwrap().name,
            "k8sattributes"
        );
        assert_eq!(
            factory(Kind::Receiver, "fluent_forward").unwrap().name,
            "fluentforward"
        );
        assert!(factory(Kind::Receiver, "kafka").is_none());
        let mut names: Vec<_> = FACTORIES
            .iter()
            .flat_map(|f| f.names().map(move |n| (f.kind, n)))
            .collect();
        let len = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), len);
    }
}
