resource "predictive_budget" "team" {
  name        = "team"
  monthly_cap = 5000
  priorities = {
    critical = 100
    normal   = 1
  }
}

resource "predictive_clone" "checkout" {
  name      = "checkout"
  budget_id = predictive_budget.team.id
  user_role = "critical"

  source {
    workload = "web"
  }
}
