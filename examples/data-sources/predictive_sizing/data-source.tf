data "predictive_sizing" "db" {
  cpu              = 32
  mem_gib          = 256
  clouds           = ["azure"]
  purchase_options = ["on-demand", "reserved-1y"]
}

output "db_hourly_cost" {
  value = data.predictive_sizing.db.hourly_cost
}
