terraform {
  required_providers {
    predictive = {
      source = "predictive/predictive"
    }
  }
}

# Sizes from the embedded price catalog and provisions on the in-process sim cloud.
provider "predictive" {
  state_path = "${abspath(path.root)}/.predictive/state.db"
  cloud      = "sim"

  history {
    file = "${abspath(path.root)}/history"
  }
}
