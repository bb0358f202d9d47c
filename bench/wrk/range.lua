-- GET with a random "Range: bytes=a-b" slice of `slice` bytes inside a file of `size` bytes.
-- Arguments (after wrk's "--"): size slice
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

local size, slice, headers

function init(args)
  size = tonumber(args[1])
  slice = tonumber(args[2])
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
end

function request()
  local first = math.random(0, size - slice)
  headers["Range"] = string.format("bytes=%.0f-%.0f", first, first + slice - 1)
  return wrk.format(nil, nil, headers)
end
