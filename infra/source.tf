# The function's source: an explicit list of files (config.tf) zipped with the paths they have in
# the repository, so main.py, requirements.txt, the config and sync/ sit at the zip root.
data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/build/${var.name_prefix}-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }
}

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62: the bucket only holds the source zip that Terraform uploads for the function build; usage logs would need a second bucket that fails this same check. Access is uniform IAM with public access prevention; enable Data Access audit logs for Cloud Storage if object reads must be traced.
  project  = var.project_id
  name     = "${var.project_id}-${var.name_prefix}-source"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # The bucket holds nothing but build input that `terraform apply` can upload again.
  force_destroy = true

  versioning {
    enabled = true
  }

  # Each deployment uploads a new object (its name carries the zip's MD5) and Terraform deletes
  # the previous one; versioning keeps it as noncurrent, this rule clears it.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis]
}

# The MD5 in the name makes every code change a new object, which makes the function rebuild.
resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "source/${var.name_prefix}-${data.archive_file.source.output_md5}.zip"
  source = data.archive_file.source.output_path

  # The new zip is uploaded before the old one is deleted: if the function's build then fails,
  # the function still points at an object that exists.
  lifecycle {
    create_before_destroy = true
  }
}
