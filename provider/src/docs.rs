//! Documentation in the Terraform registry layout, generated from the schemas:
//! `index.md`, `resources/<name>.md` and `data-sources/<name>.md` (names without the provider
//! prefix). `terraform-provider-predictive docs --out docs` writes them; a test checks that the
//! checked-in files match.

use crate::framework::schema::{Attribute, Block, Nesting};
use crate::framework::Schema;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What the docs are generated from.
#[derive(Debug)]
pub struct DocsInput<'a> {
    /// The provider's name, e.g. `predictive`.
    pub provider: &'a str,
    /// The provider's description (Markdown).
    pub description: &'a str,
    /// The provider block schema.
    pub provider_schema: &'a Schema,
    /// Resources: type name → (schema, example HCL).
    pub resources: BTreeMap<String, (Schema, String)>,
    /// Data sources: type name → (schema, example HCL).
    pub data_sources: BTreeMap<String, (Schema, String)>,
    /// Example HCL for the index page.
    pub provider_example: String,
}

/// Renders every page: relative path → Markdown.
pub fn render(input: &DocsInput<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut index = format!("---\npage_title: \"Provider: {p}\"\ndescription: |-\n  {d}\n---\n\n# {p} Provider\n\n{desc}\n\n", p = input.provider, d = first_line(input.description), desc = input.description);
    let _ = write!(
        index,
        "## Example Usage\n\n```terraform\n{}\n```\n\n## Schema\n\n",
        input.provider_example.trim_end()
    );
    render_block(&mut index, &input.provider_schema.block, "");
    out.insert("index.md".to_string(), index);
    for (kind, dir, items) in [
        ("Resource", "resources", &input.resources),
        ("Data Source", "data-sources", &input.data_sources),
    ] {
        for (name, (schema, example)) in items {
            let short = name
                .strip_prefix(&format!("{}_", input.provider))
                .unwrap_or(name);
            let mut page = format!(
                "---\npage_title: \"{name} {kind} - {p}\"\ndescription: |-\n  {d}\n---\n\n# {name} ({kind})\n\n{desc}\n\n",
                p = input.provider,
                d = first_line(&schema.block.description),
                desc = schema.block.description
            );
            if !example.trim().is_empty() {
                let _ = write!(
                    page,
                    "## Example Usage\n\n```terraform\n{}\n```\n\n",
                    example.trim_end()
                );
            }
            page.push_str("## Schema\n\n");
            render_block(&mut page, &schema.block, "");
            if kind == "Resource" {
                let _ = write!(page, "## Import\n\nImport is supported using the resource id:\n\n```shell\nterraform import {name}.example <id>\n```\n");
            }
            out.insert(format!("{dir}/{short}.md"), page);
        }
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn render_block(out: &mut String, block: &Block, anchor: &str) {
    type Pick = fn(&Attribute) -> bool;
    let groups: [(&str, Pick); 3] = [
        ("Required", |a| a.required),
        ("Optional", |a| a.optional),
        ("Read-Only", |a| a.computed && !a.optional),
    ];
    let mut nested = Vec::new();
    for (title, pred) in &groups {
        let attrs: Vec<&Attribute> = block.attributes.iter().filter(|a| pred(a)).collect();
        let blocks: Vec<_> = block
            .blocks
            .iter()
            .filter(|b| {
                if *title == "Required" {
                    b.min_items > 0
                } else {
                    *title == "Optional" && b.min_items == 0
                }
            })
            .collect();
        if attrs.is_empty() && blocks.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {title}\n");
        for a in attrs {
            let mut notes = Vec::new();
            if a.sensitive {
                notes.push("Sensitive".to_string());
            }
            let mut desc = a.description.clone();
            if let Some(d) = &a.default {
                let _ = write!(
                    desc,
                    " Defaults to `{}`.",
                    crate::value::json::encode(d, &a.ty)
                );
            }
            for v in &a.validators {
                desc.push(' ');
                desc.push_str(&v.description());
            }
            for m in &a.plan_modifiers {
                desc.push(' ');
                desc.push_str(&m.description());
            }
            let extra = if notes.is_empty() {
                String::new()
            } else {
                format!(", {}", notes.join(", "))
            };
            let _ = writeln!(
                out,
                "- `{}` ({}{extra}) {}",
                a.name,
                a.ty.friendly_name(),
                desc.trim()
            );
        }
        for b in blocks {
            let id = format!("{anchor}nestedblock--{}", b.name);
            let kind = match b.nesting {
                Nesting::Single => "Block",
                Nesting::List => "Block List",
                Nesting::Set => "Block Set",
            };
            let limits = if b.max_items > 0 {
                format!(", Max: {}", b.max_items)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "- `{}` ({kind}{limits}) {} (see [below for nested schema](#{id}))",
                b.name, b.block.description
            );
            nested.push((id, b));
        }
        out.push('\n');
    }
    for (id, b) in nested {
        let _ = writeln!(
            out,
            "<a id=\"{id}\"></a>\n### Nested Schema for `{}`\n",
            b.name
        );
        render_block(out, &b.block, &format!("{id}--"));
    }
}
