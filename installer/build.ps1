<#
.SYNOPSIS
  Build the Windows release of O.Bubble: venv -> torch (CPU or CUDA) -> pip install .[build] ->
  PyInstaller bundle -> smoke test of the frozen exe with a tiny model -> Inno Setup installer.

.DESCRIPTION
  Run from anywhere; paths are relative to the repository root. Output:
    dist\bubble\            the one-folder bundle (bubble.exe windowed, bubble-cli.exe console, _internal\)
    dist\installer\O.Bubble-Setup.exe
  The CI workflow .github\workflows\windows.yml runs exactly this script.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File installer\build.ps1
  powershell -ExecutionPolicy Bypass -File installer\build.ps1 -Torch cuda -CudaIndex cu128
#>
[CmdletBinding()]
param(
  # Python 3.11 interpreter to create the build venv with (default: the py launcher's 3.11, else python)
  [string]$Python = "",
  # cpu: the PyPI torch wheel (CPU-only on Windows); cuda: a CUDA wheel from download.pytorch.org
  [ValidateSet("cpu", "cuda")][string]$Torch = "cpu",
  [string]$TorchVersion = "2.13.0",
  [string]$CudaIndex = "cu128",
  [string]$Venv = ".venv-build",
  [switch]$SkipSmokeTest,
  [switch]$SkipInstaller
)

$ErrorActionPreference = "Stop"
$Root = Split-Path -Parent $PSScriptRoot
Set-Location $Root
$BuildDir = Join-Path $Root "build"
New-Item -ItemType Directory -Force -Path $BuildDir | Out-Null

function Step([string]$Text) { Write-Host "`n== $Text" -ForegroundColor Cyan }

# Native commands do not throw on failure: check the exit code of each one.
function Invoke-Native([string]$What, [scriptblock]$Command) {
  & $Command
  if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

function Find-Python {
  if ($Python) { return $Python }
  if (Get-Command py -ErrorAction SilentlyContinue) {
    try {
      $exe = (& py -3.11 -c "import sys; print(sys.executable)") 2>$null
      if ($LASTEXITCODE -eq 0 -and $exe) { return $exe.Trim() }
    } catch { }  # no 3.11 behind the launcher: fall back to python on PATH
  }
  return "python"
}

function Find-Iscc {
  $cmd = Get-Command ISCC.exe -ErrorAction SilentlyContinue
  if ($cmd) { return $cmd.Source }
  foreach ($dir in @("${env:ProgramFiles(x86)}", "$env:ProgramFiles", "$env:LOCALAPPDATA\Programs")) {
    foreach ($name in @("Inno Setup 6", "Inno Setup 7")) {
      $candidate = Join-Path $dir "$name\ISCC.exe"
      if ($dir -and (Test-Path $candidate)) { return $candidate }
    }
  }
  throw "Inno Setup's ISCC.exe was not found. Install Inno Setup 6 (https://jrsoftware.org/isdl.php or 'choco install innosetup')."
}

# Simplified Chinese messages for the installer. Inno Setup's own installer does not ship this
# community translation, so use one next to ISCC.exe if present (newer releases / a manual copy),
# otherwise download it from the Inno Setup source repository at a pinned commit.
function Get-ChineseIsl([string]$Iscc) {
  $innoDir = Split-Path -Parent $Iscc
  foreach ($rel in @("Languages\ChineseSimplified.isl", "Languages\Unofficial\ChineseSimplified.isl")) {
    $candidate = Join-Path $innoDir $rel
    if (Test-Path $candidate) { return $candidate }
  }
  $target = Join-Path $BuildDir "ChineseSimplified.isl"
  if (-not (Test-Path $target)) {
    $url = "https://raw.githubusercontent.com/jrsoftware/issrc/70069a49c1e56341b22a67964ad904daf0be056c/Files/Languages/Unofficial/ChineseSimplified.isl"
    Write-Host "downloading $url"
    Invoke-WebRequest -Uri $url -OutFile $target -UseBasicParsing
  }
  Write-Host ("ChineseSimplified.isl sha256 " + (Get-FileHash $target -Algorithm SHA256).Hash)
  return $target
}

$sw = [Diagnostics.Stopwatch]::StartNew()

Step "virtual environment ($Venv)"
$py = Find-Python
if (-not (Test-Path (Join-Path $Venv "Scripts\python.exe"))) {
  Invoke-Native "creating the venv" { & $py -m venv $Venv }
}
$VenvPy = Join-Path $Root "$Venv\Scripts\python.exe"
Invoke-Native "python version" { & $VenvPy -c "import sys; assert sys.version_info[:2] >= (3, 11), sys.version; print(sys.version)" }
Invoke-Native "upgrading pip" { & $VenvPy -m pip install --upgrade pip }

Step "torch $TorchVersion ($Torch)"
if ($Torch -eq "cuda") {
  # CUDA wheels live on PyTorch's own index; the PyPI wheel for Windows is CPU-only.
  Invoke-Native "installing CUDA torch" {
    & $VenvPy -m pip install "torch==$TorchVersion" --index-url "https://download.pytorch.org/whl/$CudaIndex"
  }
} else {
  Invoke-Native "installing CPU torch" { & $VenvPy -m pip install "torch==$TorchVersion" }
}

Step "O.Bubble and PyInstaller (pip install .[build])"
Invoke-Native "installing the project" { & $VenvPy -m pip install ".[build]" }
if ($Torch -eq "cuda") {
  # QLoRA (4-bit base weights) and 8-/4-bit loading on the GPU: bitsandbytes, bundled by bubble.spec
  # only when asked for (its CUDA libraries are ~125 MB)
  Invoke-Native "installing bitsandbytes (QLoRA)" { & $VenvPy -m pip install ".[qlora]" }
  $env:BUBBLE_BUNDLE_BITSANDBYTES = "1"
  # llama.cpp for GGUF models: the CUDA build of xllamacpp lives on its own index (same version as PyPI's
  # CPU wheel); see https://github.com/xorbitsai/xllamacpp
  $XllamaVersion = (& $VenvPy -c "from importlib.metadata import version; print(version('xllamacpp'))").Trim()
  Invoke-Native "installing CUDA llama.cpp (xllamacpp)" {
    & $VenvPy -m pip install "xllamacpp==$XllamaVersion" --force-reinstall --no-deps `
      --index-url "https://xorbitsai.github.io/xllamacpp/whl/cu128"
  }
}
$Version = (& $VenvPy -c "from importlib.metadata import version; print(version('bubble-desktop'))").Trim()
if ($LASTEXITCODE -ne 0 -or -not $Version) { throw "could not read the package version" }
$NumericVersion = [regex]::Match($Version, '^\d+(\.\d+){0,3}').Value  # for the exe's file version
Write-Host "version $Version ($NumericVersion)"

Step "PyInstaller bundle"
$t = [Diagnostics.Stopwatch]::StartNew()
Invoke-Native "PyInstaller" { & $VenvPy -m PyInstaller --noconfirm --clean bubble.spec }
$Bundle = Join-Path $Root "dist\bubble"
$size = (Get-ChildItem $Bundle -Recurse -File | Measure-Object -Property Length -Sum).Sum / 1MB
Write-Host ("bundle built in {0:N0} s, {1:N0} MB" -f $t.Elapsed.TotalSeconds, $size)

if (-not $SkipSmokeTest) {
  Step "smoke test of the frozen app"
  $Smoke = Join-Path $BuildDir "smoke"
  if (Test-Path $Smoke) { Remove-Item -Recurse -Force $Smoke }
  New-Item -ItemType Directory -Force -Path $Smoke | Out-Null
  $Tiny = Join-Path $Smoke "tiny-llama"
  $TinyGlm = Join-Path $Smoke "tiny-chatglm"  # ships its own code, like ChatGLM
  $TinyGguf = Join-Path $Smoke "tiny-llama.gguf"  # opens through llama.cpp in its child process
  Invoke-Native "building the tiny models" {
    & $VenvPy -c "import sys; from pathlib import Path; from tests.fixtures.tiny_models import build_tiny_model, build_tiny_gguf; from tests.fixtures.chatglm_like.build import build_chatglm_like; build_tiny_model(Path(sys.argv[1]), 'llama'); build_chatglm_like(Path(sys.argv[2]), 'roles'); build_tiny_gguf(Path(sys.argv[3]))" $Tiny $TinyGlm $TinyGguf
  }
  $env:QT_QPA_PLATFORM = "offscreen"
  $env:HF_HUB_OFFLINE = "1"
  $Report = Join-Path $Smoke "report.json"
  # bubble.exe is a windowed program: PowerShell waits for it only when its output is piped, and it has no
  # console to print to, so the report comes back through --report.
  & (Join-Path $Bundle "bubble.exe") --smoke-test --model $Tiny --remote-code-model $TinyGlm --gguf $TinyGguf `
    --home (Join-Path $Smoke "home") --report $Report | Out-Null
  $smokeExit = $LASTEXITCODE
  if (Test-Path $Report) { Get-Content $Report | Write-Host }
  if ($smokeExit -ne 0) { throw "the frozen app's smoke test failed (exit code $smokeExit)" }

  $Cli = Join-Path $Bundle "bubble-cli.exe"
  $CliHome = Join-Path $Smoke "cli-home"
  $Docs = Join-Path $Smoke "docs"
  New-Item -ItemType Directory -Force -Path $Docs | Out-Null
  Set-Content -Path (Join-Path $Docs "notes.md") -Encoding UTF8 `
    -Value "The smoke bubble is teal and floats above the lighthouse at Port Quillan."
  Invoke-Native "bubble-cli --version" { & $Cli --version }
  Invoke-Native "bubble-cli kb create" { & $Cli --home $CliHome kb create smoke }
  Invoke-Native "bubble-cli kb add" { & $Cli --home $CliHome kb add smoke $Docs }
  $hits = & $Cli --home $CliHome kb search smoke "Which colour is the bubble above the lighthouse?"
  if ($LASTEXITCODE -ne 0) { throw "bubble-cli kb search failed (exit code $LASTEXITCODE)" }
  $hits | Write-Host
  if (-not ($hits -match "Port Quillan")) { throw "bubble-cli kb search did not find the indexed note" }
}

if (-not $SkipInstaller) {
  Step "installer (Inno Setup)"
  $Iscc = Find-Iscc
  $Isl = Get-ChineseIsl $Iscc
  Invoke-Native "ISCC" {
    & $Iscc "/DAppVersion=$Version" "/DAppVersionNumeric=$NumericVersion" "/DChineseIsl=$Isl" "/DSourceDir=$Bundle" "/DOutputDir=$Root\dist\installer" `
      (Join-Path $Root "installer\bubble.iss")
  }
  Get-ChildItem (Join-Path $Root "dist\installer") | Format-Table Name, Length
}

Write-Host ("`nDone in {0:N0} s." -f $sw.Elapsed.TotalSeconds) -ForegroundColor Green
