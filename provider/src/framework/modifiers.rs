//! Reusable validators and plan modifiers.

use super::diag::{AttrPath, Diagnostics};
use super::schema::{ModifyPlanRequest, PlanModifier, Validator};
use crate::value::Value;

/// The value must be one of a fixed set of strings (each element, for lists and sets).
#[derive(Debug, Clone)]
pub struct OneOf(pub &'static [&'static str]);

impl Validator for OneOf {
    fn description(&self) -> String {
        let list: Vec<String> = self.0.iter().map(|s| format!("`{s}`")).collect();
        format!("Must be one of {}.", list.join(", "))
    }
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics) {
        let check = |path: AttrPath, s: &str, diags: &mut Diagnostics| {
            if !self.0.contains(&s) {
                diags.attr_error(
                    path.clone(),
                    "Invalid attribute value",
                    format!("{path}: {s:?} is not allowed. {}", self.description()),
                );
            }
        };
        match v {
            Value::String(s) => check(path.clone(), s, diags),
            Value::List(items) | Value::Set(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::String(s) = item {
                        check(path.index(i), s, diags);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A number within `[min, max]`.
#[derive(Debug, Clone, Copy)]
pub struct Between(pub f64, pub f64);

impl Validator for Between {
    fn description(&self) -> String {
        format!("Must be between {} and {}.", self.0, self.1)
    }
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics) {
        if let Some(x) = v.as_f64() {
            if !(self.0..=self.1).contains(&x) {
                diags.attr_error(
                    path.clone(),
                    "Invalid attribute value",
                    format!("{path}: {x} is out of range. {}", self.description()),
                );
            }
        }
    }
}

/// A number at least `min`.
#[derive(Debug, Clone, Copy)]
pub struct AtLeast(pub f64);

impl Validator for AtLeast {
    fn description(&self) -> String {
        format!("Must be at least {}.", self.0)
    }
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics) {
        if let Some(x) = v.as_f64() {
            if x < self.0 || x.is_nan() {
                diags.attr_error(
                    path.clone(),
                    "Invalid attribute value",
                    format!("{path}: {x} is too small. {}", self.description()),
                );
            }
        }
    }
}

/// A whole number.
#[derive(Debug, Clone, Copy)]
pub struct WholeNumber;

impl Validator for WholeNumber {
    fn description(&self) -> String {
        "Must be a whole number.".into()
    }
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics) {
        if let Value::Number(n) = v {
            if n.as_i64().is_none() {
                diags.attr_error(
                    path.clone(),
                    "Invalid attribute value",
                    format!("{path}: {n} is not a whole number."),
                );
            }
        }
    }
}

/// A string that is not empty.
#[derive(Debug, Clone, Copy)]
pub struct NotEmpty;

impl Validator for NotEmpty {
    fn description(&self) -> String {
        "Must not be empty.".into()
    }
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics) {
        let empty = match v {
            Value::String(s) => s.trim().is_empty(),
            Value::List(i) | Value::Set(i) => i.is_empty(),
            _ => false,
        };
        if empty {
            diags.attr_error(
                path.clone(),
                "Invalid attribute value",
                format!("{path} must not be empty."),
            );
        }
    }
}

/// A change of the attribute destroys the resource and creates a new one.
#[derive(Debug, Clone, Copy)]
pub struct RequiresReplace;

impl PlanModifier for RequiresReplace {
    fn description(&self) -> String {
        "Changing this value replaces the resource.".into()
    }
    fn modify(&self, req: &mut ModifyPlanRequest<'_>) {
        if req.creating {
            return;
        }
        // An unknown plan might change the value; a known plan replaces only when it differs.
        if req.plan.is_unknown() || &req.plan != req.state {
            req.requires_replace = true;
        }
    }
}

/// A computed value stays as it is in state instead of showing as "known after apply".
#[derive(Debug, Clone, Copy)]
pub struct UseStateForUnknown;

impl PlanModifier for UseStateForUnknown {
    fn description(&self) -> String {
        "Keeps its value from state across updates.".into()
    }
    fn modify(&self, req: &mut ModifyPlanRequest<'_>) {
        if !req.creating && req.plan.is_unknown() && !req.state.is_null() && req.config.is_null() {
            req.plan = req.state.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        m: &dyn PlanModifier,
        config: Value,
        state: Value,
        creating: bool,
        plan: Value,
    ) -> (Value, bool) {
        let mut req = ModifyPlanRequest {
            config: &config,
            state: &state,
            creating,
            plan,
            requires_replace: false,
        };
        m.modify(&mut req);
        (req.plan, req.requires_replace)
    }

    #[test]
    fn plan_modifiers_should_follow_the_table() {
        let s = Value::string;
        type Case<'a> = (
            &'a str,
            &'a dyn PlanModifier,
            Value,
            Value,
            bool,
            Value,
            (Value, bool),
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "replace on change",
                &RequiresReplace,
                s("b"),
                s("a"),
                false,
                s("b"),
                (s("b"), true),
            ),
            (
                "no replace when equal",
                &RequiresReplace,
                s("a"),
                s("a"),
                false,
                s("a"),
                (s("a"), false),
            ),
            (
                "no replace on create",
                &RequiresReplace,
                s("a"),
                Value::Null,
                true,
                s("a"),
                (s("a"), false),
            ),
            (
                "replace when plan unknown",
                &RequiresReplace,
                Value::Unknown,
                s("a"),
                false,
                Value::Unknown,
                (Value::Unknown, true),
            ),
            (
                "state for unknown",
                &UseStateForUnknown,
                Value::Null,
                s("id-1"),
                false,
                Value::Unknown,
                (s("id-1"), false),
            ),
            (
                "unknown on create",
                &UseStateForUnknown,
                Value::Null,
                Value::Null,
                true,
                Value::Unknown,
                (Value::Unknown, false),
            ),
            (
                "config wins",
                &UseStateForUnknown,
                Value::Unknown,
                s("x"),
                false,
                Value::Unknown,
                (Value::Unknown, false),
            ),
        ];
        for (name, m, config, state, creating, plan, want) in cases {
            assert_eq!(run(m, config, state, creating, plan), want, "{name}");
        }
    }

    #[test]
    fn validators_should_name_the_attribute() {
        let path = AttrPath::root("purchase_options");
        let mut d = Diagnostics::default();
        OneOf(&["on-demand", "spot"]).validate(&path, &Value::strings(["spot", "lease"]), &mut d);
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].path, Some(path.index(1)));
        assert!(
            d.0[0].detail.contains("purchase_options[1]"),
            "{}",
            d.0[0].detail
        );

        let mut d = Diagnostics::default();
        Between(0.5, 0.999).validate(&AttrPath::root("quantile"), &Value::number(1.5), &mut d);
        assert!(d.has_error());
        let mut d = Diagnostics::default();
        Between(0.5, 0.999).validate(&AttrPath::root("quantile"), &Value::number(0.9), &mut d);
        assert!(!d.has_error());
        let mut d = Diagnostics::default();
        WholeNumber.validate(&AttrPath::root("n"), &Value::number(1.5), &mut d);
        assert!(d.has_error());
    }
}
