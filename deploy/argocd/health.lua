-- Argo CD health check for processcontrol.dev/ProcessSuspension, from its kstatus conditions.
--   Degraded     Stalled is True, or a target pod failed
--   Progressing  no status yet, the operator has not seen the latest spec, or it is still working
--   Suspended    suspended and verified (Ready and Suspended are True), as Argo CD shows a suspended Job
--   Healthy      resumed and verified (Ready is True; spec.suspend is false or the duration has run out)
-- The source of truth is deploy/argocd/health.lua; argocd-cm-patch.yaml embeds it verbatim.
local hs = {}

local function find(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == type then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the processcontrol operator to act on the suspension"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. text(generation)
  return hs
end

local ready = find(status.conditions, "Ready")
local suspended = find(status.conditions, "Suspended")
local stalled = find(status.conditions, "Stalled")
local reconciling = find(status.conditions, "Reconciling")
-- Conditions written for an older generation say nothing about the current spec.
if ready ~= nil and ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. text(generation)
  return hs
end

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = text(stalled.reason) .. ": " .. text(stalled.message)
  return hs
end
if status.pods ~= nil then
  for _, pod in ipairs(status.pods) do
    if pod.state == "Failed" then
      hs.status = "Degraded"
      hs.message = "Pod " .. text(pod.name) .. " failed: " .. text(pod.message)
      return hs
    end
  end
end

local summary = ""
if status.summary ~= nil then
  summary = " (" .. text(status.summary) .. " pods)"
end
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = text(reconciling.reason) .. ": " .. text(reconciling.message)
  return hs
end

local resume_requested = obj.spec ~= nil and obj.spec.suspend == false
if is_true(ready) then
  if is_true(suspended) and not resume_requested then
    hs.status = "Suspended"
    local reason = ""
    if obj.spec ~= nil and obj.spec.reason ~= nil then
      reason = ": " .. text(obj.spec.reason)
    end
    local until_time = ""
    if status.expiresAt ~= nil then
      until_time = " until " .. text(status.expiresAt)
    end
    hs.message = "Suspended" .. summary .. until_time .. reason
    return hs
  end
  if resume_requested or (suspended ~= nil and suspended.status == "False") then
    hs.status = "Healthy"
    hs.message = text(ready.reason) .. ": " .. text(ready.message)
    return hs
  end
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = text(ready.reason) .. ": " .. text(ready.message)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
