resource "predictive_clone" "web_eu" {
  name = "web-eu"

  source {
    workload        = "web"
    mem_gib_per_cpu = 4
  }

  clouds           = ["aws", "gcp"]
  horizon          = "24h"
  quantile         = 0.95
  safety_margin    = 0.1
  purchase_options = ["on-demand", "spot"]
  min_count        = 2
  max_count        = 20
}

output "web_eu_allocation" {
  value = predictive_clone.web_eu.allocation
}
