# Quickstart: clone the "web" workload (history in ./history/web.csv) onto the sim cloud.
#   terraform init && terraform apply
terraform {
  required_providers {
    predictive = {
      source = "predictive/predictive"
    }
  }
}

provider "predictive" {
  state_path = "${abspath(path.module)}/.predictive/state.db"

  history {
    file = "${abspath(path.module)}/history"
  }
}

variable "max_count" {
  type    = number
  default = 20
}

resource "predictive_clone" "web" {
  name = "web-clone"

  source {
    workload = "web"
  }

  clouds           = ["aws"]
  horizon          = "24h"
  quantile         = 0.95
  purchase_options = ["on-demand"]
  max_count        = var.max_count
}

output "allocation" {
  value = predictive_clone.web.allocation
}

output "hourly_cost" {
  value = predictive_clone.web.hourly_cost
}

output "sizing_explanation" {
  value = predictive_clone.web.sizing_explanation
}
