"""The annotation keys the service reads and writes (api.md §2.1, service.md §2.2).

Clients read them, and several apps read the same key: a device's TemplateVersion is written by
the fleets app's rollout and read by the devices app's health and by the repos app's freeze
scope. So they are named once, here, below every app. Values are always strings.
"""

# -- on devices ----------------------------------------------------------------------------------

#: set by ``post-restore``: nothing is rendered for the device until it reconnects
AWAITING_RECONNECT = "device-controller/awaitingReconnect"
#: set when a reconnecting device knows a newer rendered version than the restored database
CONFLICT_PAUSED = "device-controller/conflictPaused"
#: the device's rendered version (shown in every representation, never stored)
RENDERED_VERSION = "device-controller/renderedVersion"
#: the device's own application lifecycle overrides (devices.lifecycle)
DEVICE_LIFECYCLE = "device-controller/applicationLifecycle"
#: the device's open console sessions, a JSON list of ``{sessionID, sessionMetadata}``
#: (devices.console); rendered to its agent as ``spec.consoles``
DEVICE_CONSOLE = "device-controller/console"

#: on a device, the TemplateVersion its spec came from; on a fleet, its current TemplateVersion
TEMPLATE_VERSION = "fleet-controller/templateVersion"
#: on a device, the TemplateVersion of its current render
RENDERED_TEMPLATE_VERSION = "fleet-controller/renderedTemplateVersion"
#: on a device, why the fleet's template could not be resolved for it
LAST_ROLLOUT_ERROR = "fleet-controller/lastRolloutError"
#: on a device, membership of the rollout batch being dispatched
SELECTED_FOR_ROLLOUT = "fleet-controller/selectedForRollout"

# -- on fleets -----------------------------------------------------------------------------------

#: the application lifecycle defaults every member inherits (devices.lifecycle)
FLEET_LIFECYCLE = "fleet-controller/applicationLifecycle"
# The state of a batched rollout (fleets.rollout).
DEPLOYING_TEMPLATE_VERSION = "fleet-controller/deployingTemplateVersion"
BATCH_NUMBER = "fleet-controller/batchNumber"
ROLLOUT_APPROVED = "fleet-controller/rolloutApproved"
APPROVAL_METHOD = "fleet-controller/rolloutApprovalMethod"
COMPLETION_REPORT = "fleet-controller/lastBatchCompletionReport"
SELECTION_DIGEST = "fleet-controller/deviceSelectionConfigDigest"
ROLLOUT_PAUSED = "fleet-controller/rolloutPaused"
REPORTED_BATCH = "fleet-controller/reportedBatch"
