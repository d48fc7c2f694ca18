; O.Bubble — Inno Setup 6 script for the Windows installer.
;
; Built by installer\build.ps1 after PyInstaller has produced dist\bubble\ (bubble.exe, bubble-cli.exe,
; _internal\). Compile by hand with:
;   ISCC.exe /DAppVersion=0.1.0 /DChineseIsl=C:\path\to\ChineseSimplified.isl installer\bubble.iss
;
; * Per-user install (PrivilegesRequired=lowest): no administrator rights, goes to
;   %LOCALAPPDATA%\Programs\O.Bubble; Start-menu shortcut, desktop shortcut (a task, ticked by default).
; * Languages: English (Inno's Default.isl) and Simplified Chinese. ChineseSimplified.isl is a community
;   ("unofficial") translation that the Inno Setup installer does not ship; build.ps1 downloads it from the
;   Inno Setup source repository (github.com/jrsoftware/issrc, Files/Languages/Unofficial/) into build\ and
;   passes its path as /DChineseIsl=... (see installer\README.md).
; * Uninstall removes the program; the user's settings, knowledge bases, conversations, imported models and
;   logs (%LOCALAPPDATA%\bubble, %APPDATA%\bubble) are kept unless the user answers
;   "Yes" in the question the uninstaller asks at the end ("No" is the default; a silent uninstall keeps
;   the data unless started with /DELETEUSERDATA).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef AppVersionNumeric
  ; the file version must be plain numbers (a "0.2.0.dev1" package version is not)
  #define AppVersionNumeric "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\dist\bubble"
#endif
#ifndef OutputDir
  #define OutputDir "..\dist\installer"
#endif
#define AppName "O.Bubble"
#define AppExe "bubble.exe"
#define AppPublisher "O.Bubble developers"
#define DataFolder "bubble"

[Setup]
; AppId identifies the product across versions (upgrades replace, uninstall finds it): never change it.
AppId={{6F1C2B8E-3D4A-4F5B-9C7E-0B1D2A3C4E5F}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppPublisher}
VersionInfoVersion={#AppVersionNumeric}
PrivilegesRequired=lowest
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
UninstallDisplayName={#AppName}
UninstallDisplayIcon={app}\{#AppExe}
SetupIconFile=..\resources\icons\bubble.ico
OutputDir={#OutputDir}
OutputBaseFilename=O.Bubble-Setup
Compression=lzma2/normal
SolidCompression=yes
LZMANumBlockThreads=4
WizardStyle=modern
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
; the app holds its knowledge-base folder open: let Setup ask to close it before replacing files
CloseApplications=yes
RestartApplications=no
ShowLanguageDialog=auto
#ifdef DiskSpanning
; a CUDA build can exceed the 4.2 GB a single Setup.exe may hold: then pass /DDiskSpanning (Setup + .bin files)
DiskSpanning=yes
DiskSliceSize=max
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"
#ifdef ChineseIsl
Name: "chinesesimplified"; MessagesFile: "{#ChineseIsl}"
#else
  #error ChineseSimplified.isl is required: run installer\build.ps1, or pass /DChineseIsl=PATH to ISCC
#endif

[CustomMessages]
english.LaunchApp=Start O.Bubble now
chinesesimplified.LaunchApp=立即启动 O.Bubble
english.DeleteDataAsk=O.Bubble has been removed. Your settings, knowledge bases, conversations, imported models and logs were kept, so a later install finds them again.%n%nAlso delete this data now? This cannot be undone.
chinesesimplified.DeleteDataAsk=O.Bubble 已卸载。您的设置、知识库、对话、导入的模型和日志已保留，以后重新安装时仍可使用。%n%n现在也删除这些数据吗？此操作无法撤销。

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; an upgrade must not keep modules of the previous version next to the new ones
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{app}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{app}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchApp}"; Flags: nowait postinstall skipifsilent

[Code]
{ True when the uninstaller was started with /DELETEUSERDATA (for silent uninstalls). }
function HasParam(const Name: String): Boolean;
var
  I: Integer;
begin
  Result := False;
  for I := 1 to ParamCount do
    if CompareText(ParamStr(I), Name) = 0 then
      Result := True;
end;

{ The folders Bubble keeps user data in (platformdirs on Windows: %LOCALAPPDATA%\bubble; %APPDATA%\bubble
  for roaming settings). A portable BUBBLE_HOME elsewhere is never touched. }
procedure DeleteUserData();
begin
  DelTree(ExpandConstant('{localappdata}\{#DataFolder}'), True, True, True);
  DelTree(ExpandConstant('{userappdata}\{#DataFolder}'), True, True, True);
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep <> usPostUninstall then
    Exit;
  if UninstallSilent() then
  begin
    { silent uninstalls keep the data unless explicitly told otherwise }
    if HasParam('/DELETEUSERDATA') then
      DeleteUserData();
  end
  { "No" is the default button: keeping the data is the safe choice }
  else if MsgBox(CustomMessage('DeleteDataAsk'), mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES then
    DeleteUserData();
end;
