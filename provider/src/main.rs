//! `terraform-provider-predictive`: Terraform plugin protocol 6 server.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("this binary is a Terraform provider plugin and is started by terraform")
}
