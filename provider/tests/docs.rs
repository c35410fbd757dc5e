//! The checked-in docs/ must match what `terraform-provider-predictive docs` generates from the
//! schemas (regenerate with `cargo run -p terraform-provider-predictive -- docs --out docs`).

use std::path::Path;

#[test]
fn checked_in_docs_should_match_the_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let pages = terraform_provider_predictive::provider::docs();
    assert!(
        pages.contains_key("index.md")
            && pages.contains_key("resources/clone.md")
            && pages.contains_key("data-sources/sizing.md")
    );
    for (path, text) in &pages {
        let on_disk = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        assert!(
            on_disk == *text,
            "docs/{path} is out of date: run `cargo run -p terraform-provider-predictive -- docs --out docs`"
        );
    }
    for dir in ["resources", "data-sources"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            assert!(
                pages.contains_key(&rel),
                "docs/{rel} documents nothing the provider has"
            );
        }
    }
}

#[test]
fn every_attribute_should_have_a_description() {
    use terraform_provider_predictive::framework::Block;
    use terraform_provider_predictive::proto::ProviderDef;
    use terraform_provider_predictive::provider::PredictiveProvider;
    fn check(b: &Block, at: &str) {
        assert!(!b.description.is_empty(), "{at} has no description");
        for a in &b.attributes {
            assert!(
                !a.description.trim().is_empty(),
                "{at}.{} has no description",
                a.name
            );
        }
        for n in &b.blocks {
            check(&n.block, &format!("{at}.{}", n.name));
        }
    }
    let p = PredictiveProvider;
    check(&p.schema().block, "provider");
    for r in p.resources() {
        check(&r.schema().block, r.type_name());
    }
    for d in p.data_sources() {
        check(&d.schema().block, d.type_name());
    }
}
