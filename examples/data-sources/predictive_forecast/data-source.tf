data "predictive_forecast" "web" {
  workload = "web"
  horizon  = "48h"
}

output "web_p95_peak" {
  value = data.predictive_forecast.web.peaks["0.95"]
}
