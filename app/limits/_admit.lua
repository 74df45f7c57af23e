-- Stream admission: every limit of a new stream and its budget reservation, all or nothing.
--
-- KEYS[1]   reservation deadlines (sorted set: stream id by expiry time)
-- KEYS[2]   this stream's reservation (hash: amount, keys, state)
-- KEYS[3 .. 2+L]      the limits' keys
-- KEYS[3+L .. 2+L+B]  the budgets' base keys (the UTC day number is appended)
-- ARGV: L, B, amount (micro-USD), hold seconds, record TTL, lifetime TTL, purge batch,
--       stream id, reservation key prefix, then per limit: count, seconds, mode
--       ('hit': checked and counted; 'peek': only read, for the headers), then per budget: ceiling
-- Returns {'in_use'} when a reservation record of this stream id exists (the id was
-- taken by another admission, live or left behind): nothing is counted or reserved;
-- {'limit', i, retry_after, reset}, {'budget', j, retry_after},
-- or {'ok', i, remaining, reset} with the most constraining limit i for the headers.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n_limits, n_budgets = tonumber(ARGV[1]), tonumber(ARGV[2])
local amount, hold, record_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lifetime_ttl, purge = tonumber(ARGV[6]), tonumber(ARGV[7])
local stream_id, res_prefix = ARGV[8], ARGV[9]
local first_budget = 10 + n_limits * 3

if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'in_use'}
end

-- A moving window is a list of timestamps, newest first, trimmed to the limit's count
-- (the layout of the `limits` library, so flask-limiter's windows read the same way).
-- Returns the entries inside the window and when its oldest one leaves it.
local function moving_window(key, count, seconds)
  local size = math.min(redis.call('LLEN', key), count)
  local low, high, found = 0, size - 1, -1
  while low <= high do
    local mid = math.floor((low + high) / 2)
    local stamp = tonumber(redis.call('LINDEX', key, mid))
    if stamp and stamp > now - seconds then
      found, low = mid, mid + 1
    else
      high = mid - 1
    end
  end
  if found < 0 then
    return 0, now + seconds
  end
  return found + 1, tonumber(redis.call('LINDEX', key, found)) + seconds
end

local used, resets, counts, seconds_of, modes = {}, {}, {}, {}, {}
local breach, breach_wait = 0, 0
for i = 1, n_limits do
  local base = 10 + (i - 1) * 3
  local count, seconds, mode = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), ARGV[base + 2]
  local key = KEYS[2 + i]
  local n, reset
  if seconds > 0 then
    n, reset = moving_window(key, count, seconds)
  else
    n = tonumber(redis.call('GET', key) or '0')
    local ttl = redis.call('TTL', key)
    reset = now + (ttl > 0 and ttl or lifetime_ttl)
  end
  used[i], resets[i], counts[i], seconds_of[i], modes[i] = n, reset, count, seconds, mode
  if mode == 'hit' and n >= count then
    local wait = reset - now
    if breach == 0 or wait > breach_wait then
      breach, breach_wait = i, wait
    end
  end
end
if breach > 0 then
  return {'limit', breach, math.max(1, math.ceil(breach_wait)), math.ceil(resets[breach])}
end

-- Reservations of work that never settled (a crashed worker) stop holding budget.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, purge)
for _, sid in ipairs(expired) do
  local rkey = res_prefix .. sid
  local held = redis.call('HMGET', rkey, 'amount', 'keys', 'state')
  if held[1] and held[3] == 'held' then
    for key in string.gmatch(held[2], '%S+') do
      redis.call('DECRBY', key, held[1])
    end
    redis.call('HSET', rkey, 'state', 'expired')
  end
  redis.call('ZREM', KEYS[1], sid)
end

local day = math.floor(now / 86400)
local day_keys = {}
for j = 1, n_budgets do
  local key = KEYS[2 + n_limits + j] .. ':' .. day
  local ceiling = tonumber(ARGV[first_budget + j - 1])
  day_keys[j] = key
  if ceiling > 0 and tonumber(redis.call('GET', key) or '0') + amount > ceiling then
    return {'budget', j, math.max(1, math.ceil((day + 1) * 86400 - now))}
  end
end

-- Admitted: count the hits and hold the reservation.
local pick, pick_remaining = 0, 0
for i = 1, n_limits do
  local key, remaining = KEYS[2 + i], counts[i] - used[i]
  if modes[i] == 'hit' then
    remaining = remaining - 1
    if seconds_of[i] > 0 then
      redis.call('LPUSH', key, tostring(now))
      redis.call('LTRIM', key, 0, counts[i] - 1)
      redis.call('EXPIRE', key, seconds_of[i])
    elseif redis.call('INCR', key) == 1 then
      redis.call('EXPIRE', key, lifetime_ttl)
    end
  end
  if pick == 0 or remaining < pick_remaining or (remaining == pick_remaining and resets[i] > resets[pick]) then
    pick, pick_remaining = i, remaining
  end
end
for j = 1, n_budgets do
  redis.call('INCRBY', day_keys[j], amount)
  redis.call('EXPIRE', day_keys[j], 3 * 86400)
end
redis.call('HSET', KEYS[2], 'amount', amount, 'keys', table.concat(day_keys, ' '), 'state', 'held')
redis.call('EXPIRE', KEYS[2], record_ttl)
redis.call('ZADD', KEYS[1], now + hold, stream_id)
if pick == 0 then
  return {'ok', 0, 0, 0}
end
return {'ok', pick, math.max(0, pick_remaining), math.ceil(resets[pick])}
