-- POST with a form body, over and over (e.g. a FHIR search: POST [base]/Binary/_search).
-- Arguments (after wrk's "--"): the form-encoded body, e.g. _id=abc
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function init(args)
  wrk.body = args[1]
end
