/*
 * ctrlevent.exe EVENT IMAGE: delivers a console control event (break = CTRL_BREAK_EVENT, close =
 * CTRL_CLOSE_EVENT, c = CTRL_C_EVENT) to the one running process whose image name is IMAGE, for
 * the Wine tests of calloutd.exe only (tests/windows_wine.rs builds it with mingw-w64).
 *
 * How: the way Windows itself delivers these events. The console host does not call a process's
 * handlers; the system creates a new thread in the process at kernelbase's CtrlRoutine with the
 * event as its argument, and CtrlRoutine runs the handlers that SetConsoleCtrlHandler installed
 * (Microsoft's HandlerRoutine documentation: "the system creates a new thread in the process to
 * execute the handler function"). This program creates that thread with CreateRemoteThread.
 *
 * Why not Wine's own paths (Wine 8.0, Debian 12): GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, ...)
 * fails with ERROR_INVALID_HANDLE even from a process sharing calloutd.exe's console (the same
 * call with CTRL_C_EVENT works); wineserver maps only Ctrl-C and Ctrl-Break to signals and answers
 * every other event with STATUS_NOT_IMPLEMENTED ("FIXME: should support the other events"); and
 * Wine's conhost never sends CTRL_CLOSE_EVENT (closing its window just ends conhost; a console
 * made by AllocConsole without a display has no window to close at all).
 */
#include <windows.h>
#include <tlhelp32.h>
#include <stdio.h>
#include <string.h>

/* The id of the one process named `image`; 0 (with a message) when there is none or several. */
static DWORD find_process(const char *image) {
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    if (snap == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "ctrlevent: process snapshot failed: error %lu\n", GetLastError());
        return 0;
    }
    PROCESSENTRY32 entry;
    entry.dwSize = sizeof(entry);
    DWORD pid = 0, found = 0;
    for (BOOL ok = Process32First(snap, &entry); ok; ok = Process32Next(snap, &entry)) {
        if (_stricmp(entry.szExeFile, image) == 0) {
            pid = entry.th32ProcessID;
            found++;
        }
    }
    CloseHandle(snap);
    if (found != 1) {
        fprintf(stderr, "ctrlevent: %lu processes named %s, expected one\n", found, image);
        return 0;
    }
    return pid;
}

/* The base address of the module `name` in process `pid`, or NULL. */
static BYTE *module_base(DWORD pid, const char *name) {
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPMODULE, pid);
    if (snap == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "ctrlevent: module snapshot of %lu failed: error %lu\n", pid, GetLastError());
        return NULL;
    }
    MODULEENTRY32 entry;
    entry.dwSize = sizeof(entry);
    BYTE *base = NULL;
    for (BOOL ok = Module32First(snap, &entry); ok; ok = Module32Next(snap, &entry)) {
        if (_stricmp(entry.szModule, name) == 0) {
            base = entry.modBaseAddr;
            break;
        }
    }
    CloseHandle(snap);
    return base;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: ctrlevent break|close|c IMAGE\n");
        return 2;
    }
    DWORD event;
    if (strcmp(argv[1], "break") == 0) {
        event = CTRL_BREAK_EVENT;
    } else if (strcmp(argv[1], "close") == 0) {
        event = CTRL_CLOSE_EVENT;
    } else if (strcmp(argv[1], "c") == 0) {
        event = CTRL_C_EVENT;
    } else {
        fprintf(stderr, "ctrlevent: unknown event %s\n", argv[1]);
        return 2;
    }
    DWORD pid = find_process(argv[2]);
    if (!pid) return 1;
    /* CtrlRoutine lies at the same offset in the target's kernelbase as in ours. */
    HMODULE ours = GetModuleHandleA("kernelbase.dll");
    FARPROC routine = ours ? GetProcAddress(ours, "CtrlRoutine") : NULL;
    BYTE *theirs = module_base(pid, "kernelbase.dll");
    if (!routine || !theirs) {
        fprintf(stderr, "ctrlevent: kernelbase!CtrlRoutine not found\n");
        return 1;
    }
    BYTE *target = theirs + ((BYTE *)routine - (BYTE *)ours);
    HANDLE process = OpenProcess(PROCESS_CREATE_THREAD | PROCESS_QUERY_INFORMATION |
                                     PROCESS_VM_OPERATION | PROCESS_VM_WRITE | PROCESS_VM_READ,
                                 FALSE, pid);
    if (!process) {
        fprintf(stderr, "ctrlevent: OpenProcess(%lu) failed: error %lu\n", pid, GetLastError());
        return 1;
    }
    HANDLE thread = CreateRemoteThread(process, NULL, 0, (LPTHREAD_START_ROUTINE)target,
                                       (LPVOID)(ULONG_PTR)event, 0, NULL);
    if (!thread) {
        fprintf(stderr, "ctrlevent: CreateRemoteThread failed: error %lu\n", GetLastError());
        CloseHandle(process);
        return 1;
    }
    printf("ctrlevent: %s delivered to %s (process %lu)\n", argv[1], argv[2], pid);
    CloseHandle(thread);
    CloseHandle(process);
    return 0;
}
