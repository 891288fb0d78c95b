# Sourced by the scripts: one cache outside the clone for builds and downloads.
export ONESTEP_CACHE="${ONESTEP_CACHE:-$HOME/.cache/onestep-sr}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ONESTEP_CACHE/target}"
# Software Vulkan (lavapipe) when no other ICD is configured.
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] \
   && ! ls /usr/share/vulkan/icd.d/ 2>/dev/null | grep -qv lvp; then
  export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
fi
# Mesa's Vulkan loader complains on every start without one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="$ONESTEP_CACHE/xdg-runtime"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
