"""``bopask command "pick up the mustard bottle and put it next to the soup can"``.

Publishes the text as std_msgs/String on ``/bopask/command`` (waiting until a subscriber,
the vlm node, is matched) and, with ``--wait``, prints ``/bopask/status`` lines until the
executor reports the command done, failed or refused.
"""

import sys
import time


def add_arguments(parser):
    """Arguments of ``bopask command``."""
    parser.add_argument('text', help='the language command')
    parser.add_argument('--wait', type=float, default=0.0, metavar='SECONDS',
                        help='print status lines for up to SECONDS until the command ends')
    parser.add_argument('--discovery-timeout', type=float, default=10.0,
                        help='seconds to wait for the vlm node to subscribe (default 10)')


def run(args):
    """Entry point of ``bopask command``."""
    import rclpy
    from std_msgs.msg import String

    from bopask_ros import ros_common as rc
    text = args.text.strip()
    if not text:
        print('command: empty command text', file=sys.stderr)
        return 2
    rclpy.init()
    node = rclpy.create_node('bopask_command')
    lines = []
    node.create_subscription(String, rc.STATUS_TOPIC, lambda m: lines.append(m.data), 50)
    pub = node.create_publisher(String, rc.COMMAND_TOPIC, 10)
    try:
        end = time.monotonic() + args.discovery_timeout
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        if pub.get_subscription_count() == 0:
            print(f'command: nothing subscribes to {rc.COMMAND_TOPIC} (is the graph running, '
                  f'same ROS_DOMAIN_ID?)', file=sys.stderr)
            return 1
        pub.publish(String(data=text))
        print(f'sent: {text}')
        end = time.monotonic() + args.wait
        shown = 0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
            for line in lines[shown:]:
                print(line)
                if line.endswith(': done') or 'failed' in line or 'refused' in line:
                    return 0 if line.endswith(': done') else 1
            shown = len(lines)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
