# Secret containers only, one per "secret:NAME" reference in the config (config.tf). Their values
# are added with `gcloud secrets versions add NAME --data-file=-` (see outputs and README), so
# they never appear in Terraform configuration, plan or state.
resource "google_secret_manager_secret" "registry" {
  for_each = toset(local.secret_ids)

  project   = var.project_id
  secret_id = each.value

  # Removing a "secret:NAME" reference from the config would otherwise destroy the secret and
  # every version of its value on the next apply. With this on, such an apply stops with an
  # error instead; the README ("Secrets") says how to delete a secret on purpose.
  deletion_protection = true

  replication {
    auto {}
  }

  depends_on = [time_sleep.apis]
}

# The runtime account may read exactly these secrets, and nothing else may be granted here.
resource "google_secret_manager_secret_iam_member" "runtime_access" {
  for_each = google_secret_manager_secret.registry

  project   = each.value.project
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}
