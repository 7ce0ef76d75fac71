"""Slug storage: one interface (`ISlugStore`), a local-directory backend with
HMAC-signed URLs served by the API port, and an S3 backend with presigned URLs."""
