data "predictive_instance_types" "big_gcp" {
  cloud       = "gcp"
  min_vcpu    = 16
  min_mem_gib = 64
}

output "big_gcp_types" {
  value = [for t in data.predictive_instance_types.big_gcp.instance_types : t.name]
}
