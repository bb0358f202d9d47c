-- OAuth2 client_credentials at the token endpoint, over and over (Basic auth given with -H).
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
