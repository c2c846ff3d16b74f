use super::*;

const YAML: &str = "upstream_keys: {p: [sk-real]}\ntenants: {t: {}}\nforward_keys: [{key: fk-1, tenant: t}]\nroutes:\n  - {prefix: /, upstream: 'http://127.0.0.1:9', auth: {mode: forward_keys, pool: p}}\n";

fn config() -> Config {
    crate::config::parse_bytes(YAML.as_bytes(), &|_| None).unwrap()
}

fn problems(config: Config) -> String {
    match Gateway::build(config) {
        Ok(_) => "built".into(),
        Err(p) => p.to_string(),
    }
}

#[test]
fn the_validated_config_builds() {
    assert_eq!(problems(config()), "built");
}

// A `Config` is plain data: one that names a pool no one configured (bypassing the
// cross-check) used to build a route whose forward keys had no pool key to be swapped for.
#[test]
fn a_pool_name_that_resolves_to_nothing_is_a_problem() {
    let mut c = config();
    c.routes[0].auth.pool = Some("gone".into());
    assert!(problems(c).contains("routes[0].auth.pool"));
    let mut c = config();
    c.routes[0].upstreams[0].pool = Some("gone".into());
    assert!(problems(c).contains("routes[0].upstreams[0].pool"));
    let mut c = config();
    c.tenants[0].pool = Some("gone".into());
    assert!(problems(c).contains("tenants.t.pool"));
}

// ...and one whose forward key names no tenant used to drop the key without a word.
#[test]
fn a_tenant_name_that_resolves_to_nothing_is_a_problem() {
    let mut c = config();
    c.forward_keys[0].tenant = "gone".into();
    assert!(problems(c).contains("forward_keys[0].tenant"));
}
