"""The webmail's message catalogue (Simplified Chinese by default, English) and the choice of language per request.

A dict per locale rather than gettext: the catalogue is small, needs no compile step
(`make` builds nothing for the web), and a test checks that both locales have exactly
the same keys, so no page shows a key or a half-translated screen.
"""

from __future__ import annotations

DEFAULT = "zh"
LOCALES = ("zh", "en")
LANG_COOKIE = "postroom-lang"
MAX_ACCEPT_LANGUAGE_ITEMS = 20  # items of Accept-Language read at most (RFC 9110 §12.5.4)

HTML_LANG = {"zh": "zh-CN", "en": "en"}
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}

MESSAGES: dict[str, dict[str, str]] = {
    "zh": {
        "app_name": "邮件",
        "sign_in": "登录",
        "sign_in_title": "登录邮箱",
        "address": "邮箱地址",
        "password": "密码",
        "sign_in_failed": "邮箱地址或密码不正确。",
        "sign_in_throttled": "登录失败次数过多，请 {seconds} 秒后再试。",
        "sign_out": "退出",
        "sign_out_everywhere": "在所有设备上退出",
        "signed_in_as": "当前账号",
        "language": "语言",
        "switch": "切换",
        "folders": "文件夹",
        "unread": "未读",
        "flagged": "已加星标",
        "from": "发件人",
        "to": "收件人",
        "cc": "抄送",
        "subject": "主题",
        "date": "日期",
        "no_subject": "（无主题）",
        "no_messages": "此文件夹中没有邮件。",
        "newest_first": "最新在前",
        "oldest_first": "最早在前",
        "sort": "排序",
        "previous_page": "上一页",
        "next_page": "下一页",
        "page_of": "第 {page} 页，共 {pages} 页（{count} 封）",
        "back_to_list": "返回列表",
        "attachments": "附件",
        "download": "下载",
        "remote_images_blocked": "为保护隐私，已阻止远程图片。",
        "show_remote_images": "显示远程图片",
        "plain_text": "纯文本",
        "formatted": "格式化显示",
        "mark_unread": "标为未读",
        "mark_read": "标为已读",
        "flag": "加星标",
        "unflag": "取消星标",
        "move_to": "移动到",
        "move": "移动",
        "delete": "删除",
        "delete_forever": "彻底删除",
        "message_body": "邮件正文",
        "not_found": "找不到该邮件或文件夹。",
        "forbidden": "请求无效，请刷新页面后重试。",
        "error": "出错了",
        "folder_INBOX": "收件箱",
        "folder_Drafts": "草稿箱",
        "folder_Sent": "已发送",
        "folder_Trash": "已删除",
        "folder_Junk": "垃圾邮件",
        "folder_Archive": "归档",
        "messages_in": "{folder}中的邮件",
        "actions": "操作",
        "size": "大小",
        "compose": "写邮件",
        "reply": "回复",
        "reply_all": "全部回复",
        "forward": "转发",
        "send": "发送",
        "body": "正文",
        "attach_files": "添加附件",
        "quote_intro": "{who} 写道：",
        "bad_address": "收件人地址无效：{detail}",
        "no_recipients": "请至少填写一位收件人。",
        "too_many_recipients": "收件人过多（最多 {detail} 位）。",
        "send_refused": "邮件未能发送：{detail}",
        "refused_some": "以下收件人未能送达：{detail}",
        "forwarded_original": "原邮件将作为附件一并转发。",
        "search": "搜索",
        "clear_search": "清除搜索",
        "search_results": "“{query}”的搜索结果：{count} 封",
        "no_matches": "没有找到匹配的邮件。",
        # --- read status and recall (issue 10 point 5) ---
        "rs_title": "阅读状态",
        "rs_delivered": "送达时间",
        "rs_read": "阅读时间",
        "rs_unread": "未读",
        "rs_recalled": "已撤回",
        "rs_recall_state": "撤回",
        "rs_not_delivered": "未送达",
        "rs_recall": "撤回邮件",
        "rs_recall_unavailable": "已有收件人阅读，不能撤回。",
        "rs_recall_done": "邮件已撤回，收件人的副本已全部删除。",
        "rs_recall_refused": "无法撤回：已有收件人阅读了这封邮件。没有删除任何副本。",
        "rs_recall_read_meanwhile": "邮件已撤回，但有收件人在撤回的同时打开了它（见下表的阅读时间）。",
    },
    "en": {
        "app_name": "Mail",
        "sign_in": "Sign in",
        "sign_in_title": "Sign in to your mailbox",
        "address": "Email address",
        "password": "Password",
        "sign_in_failed": "The address or password is not correct.",
        "sign_in_throttled": "Too many failed sign-ins; try again in {seconds} s.",
        "sign_out": "Sign out",
        "sign_out_everywhere": "Sign out everywhere",
        "signed_in_as": "Signed in as",
        "language": "Language",
        "switch": "Switch",
        "folders": "Folders",
        "unread": "Unread",
        "flagged": "Flagged",
        "from": "From",
        "to": "To",
        "cc": "Cc",
        "subject": "Subject",
        "date": "Date",
        "no_subject": "(no subject)",
        "no_messages": "There are no messages in this folder.",
        "newest_first": "Newest first",
        "oldest_first": "Oldest first",
        "sort": "Sort",
        "previous_page": "Previous",
        "next_page": "Next",
        "page_of": "Page {page} of {pages} ({count} messages)",
        "back_to_list": "Back to the list",
        "attachments": "Attachments",
        "download": "Download",
        "remote_images_blocked": "Remote images are blocked to protect your privacy.",
        "show_remote_images": "Show remote images",
        "plain_text": "Plain text",
        "formatted": "Formatted",
        "mark_unread": "Mark unread",
        "mark_read": "Mark read",
        "flag": "Flag",
        "unflag": "Unflag",
        "move_to": "Move to",
        "move": "Move",
        "delete": "Delete",
        "delete_forever": "Delete for ever",
        "message_body": "Message body",
        "not_found": "No such message or folder.",
        "forbidden": "The request was not valid; reload the page and try again.",
        "error": "Something went wrong",
        "folder_INBOX": "Inbox",
        "folder_Drafts": "Drafts",
        "folder_Sent": "Sent",
        "folder_Trash": "Trash",
        "folder_Junk": "Junk",
        "folder_Archive": "Archive",
        "messages_in": "Messages in {folder}",
        "actions": "Actions",
        "size": "Size",
        "compose": "Compose",
        "reply": "Reply",
        "reply_all": "Reply all",
        "forward": "Forward",
        "send": "Send",
        "body": "Message",
        "attach_files": "Attach files",
        "quote_intro": "{who} wrote:",
        "bad_address": "Not a valid recipient address: {detail}",
        "no_recipients": "Name at least one recipient.",
        "too_many_recipients": "Too many recipients (at most {detail}).",
        "send_refused": "The message was not sent: {detail}",
        "refused_some": "Not delivered to: {detail}",
        "forwarded_original": "The original message goes along as an attachment.",
        "search": "Search",
        "clear_search": "Clear search",
        "search_results": "{count} messages match “{query}”",
        "no_matches": "No messages match.",
        # --- read status and recall (issue 10 point 5) ---
        "rs_title": "Read status",
        "rs_delivered": "Delivered",
        "rs_read": "Read",
        "rs_unread": "unread",
        "rs_recalled": "Recalled",
        "rs_recall_state": "Recall",
        "rs_not_delivered": "not delivered",
        "rs_recall": "Recall message",
        "rs_recall_unavailable": "A recipient has read it: it can no longer be recalled.",
        "rs_recall_done": "The message was recalled: every recipient's copy was removed.",
        "rs_recall_refused": "Cannot recall: a recipient has already read this message. No copy was removed.",
        "rs_recall_read_meanwhile": "The message was recalled, but a recipient opened it at the same moment (see the read time below).",
    },
}


def translator(locale: str):
    """`_(key, **args)` for templates: the message in `locale`, formatted with args."""
    table = MESSAGES.get(locale, MESSAGES[DEFAULT])

    def _(key: str, **args: object) -> str:
        text = table[key]
        return text.format(**args) if args else text
    return _


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The locale: the cookie's when it names one we have, else the best of Accept-Language, else Chinese."""
    if cookie in LOCALES:
        return cookie
    best, best_q = DEFAULT, 0.0
    for item in (accept_language or "").split(",", MAX_ACCEPT_LANGUAGE_ITEMS)[:MAX_ACCEPT_LANGUAGE_ITEMS]:
        tag, _, params = item.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:7])
            except ValueError:
                continue
        primary = tag.strip().split("-", 1)[0].lower()
        if primary in LOCALES and q > best_q:
            best, best_q = primary, q
    return best
